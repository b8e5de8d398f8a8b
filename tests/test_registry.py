import pytest

from ftool.errors import FtoolError
from ftool.registry import Registry, close_matches_hint


def make_registry() -> Registry:
    reg = Registry("model", "model", provided=("input_shape", "num_outputs"))

    @reg.register("small")
    def small(input_shape, num_outputs, width: int = 8, rate: float = 0.1, name_tag: str | None = None,
              betas: list = (0.9, 0.99)):
        return ("small", input_shape, num_outputs, width, rate)

    return reg


def test_build_passes_provided_and_config_arguments():
    reg = make_registry()
    assert reg.build("small", {"width": 4}, input_shape=(1, 8, 8), num_outputs=3, unused=1) == \
        ("small", (1, 8, 8), 3, 4, 0.1)


def test_unknown_name_lists_options_and_suggests_closest():
    with pytest.raises(FtoolError, match=r"unknown model 'smal'; registered: small\. Did you mean 'small'\?"):
        make_registry().get("smal")
    with pytest.raises(FtoolError, match=r"unknown model 'tiny'; registered: small\. If your own module registers "
                                         r"it, name the module in imports=\[\.\.\.\]\.$"):
        make_registry().get("tiny")  # nothing close: perhaps the user's module was not imported


def test_registering_a_name_twice_says_where_the_first_came_from():
    reg = make_registry()
    with pytest.raises(FtoolError, match=r"registered twice: first by .*test_registry:\d+"):
        reg.register("small")(lambda input_shape, num_outputs: None)


def test_check_args_reports_unknown_keys_with_suggestion_and_types():
    reg = make_registry()
    assert reg.check_args("small", {"width": 3, "rate": 1}) == []  # an int is a fine float
    (error,) = reg.check_args("small", {"widht": 3})
    assert error.startswith("model.widht: not an option of model 'small'") and "Did you mean 'width'?" in error
    assert reg.check_args("small", {"width": "wide"}) == ["model.width: must be a whole number, got 'wide'"]
    assert reg.check_args("small", {"width": True}) == ["model.width: must be a whole number, got True"]
    assert reg.check_args("small", {"name_tag": None}) == []
    # a number for a list was the builder's traceback (Adam's tuple(0.9): 'float' object is not iterable)
    assert reg.check_args("small", {"betas": 0.9}) == ["model.betas: must be a list ([a,b]), got 0.9"]
    assert reg.check_args("small", {"betas": [0.8, 0.9]}) == []
    assert reg.check_args("small", {"num_outputs": 4}) == ["model.num_outputs is set by ftool, not by the config"]


def test_a_name_in_other_case_is_the_option_meant():
    # (difflib's closest to AdamW is adam)
    assert close_matches_hint("AdamW", ["adam", "adamw", "sgd"]) == " Did you mean 'adamw'?"
    assert close_matches_hint("adamm", ["adam", "adamw", "sgd"]) == " Did you mean 'adam'?"
