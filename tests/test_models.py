import re

import pytest
import torch

from ftool.errors import FtoolError
from ftool.models import apply_init
from ftool.registry import MODELS


def build(name, input_shape, num_outputs=10, **args):
    return MODELS.build(name, args, input_shape=input_shape, num_outputs=num_outputs)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_simplecnn_seed_layout_has_the_documented_parameter_count():
    model = build("simplecnn", (3, 32, 32))
    assert n_params(model) == 806_666
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["simplecnn", "convnet", "mlp", "linear", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_models_size_themselves_to_the_data(name, shape):
    model = build(name, shape, num_outputs=7).eval()
    assert model(torch.randn(3, *shape)).shape == (3, 7)


def test_convnet_is_the_seed_custom_module_on_cifar_shapes():
    model = build("convnet", (3, 32, 32))
    assert model.head[1].in_features == 64 * 8 * 8 and model.head[1].out_features == 128


def test_mlp_hidden_sizes_and_dropout_are_configurable():
    model = build("mlp", (1, 28, 28), hidden=[32], dropout=0.5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 10)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())


def test_layer_sizes_below_one_are_errors_and_one_hidden_size_is_one_layer():
    one = build("mlp", (1, 8, 8), hidden=16)  # model.hidden=16, not a list
    assert [m.out_features for m in one.modules() if isinstance(m, torch.nn.Linear)] == [16, 10]
    for name, sizes, message in (("mlp", {"hidden": [64, 0]}, "model.hidden: mlp's layer sizes must be whole numbers "
                                  ">= 1, got [64, 0]"),  # a layer of nothing: only the output biases would learn
                                 ("mlp", {"hidden": "abc"}, "must be whole numbers >= 1, got abc"),  # not ['a', 'b', 'c']
                                 ("simplecnn", {"hidden": -5}, "model.hidden: simplecnn's"),  # torch's traceback
                                 ("simplecnn", {"channels": 0}, "model.channels: simplecnn's"),
                                 ("convnet", {"hidden": 0}, "model.hidden: convnet's")):
        with pytest.raises(FtoolError, match=re.escape(message)):
            build(name, (1, 8, 8), **sizes)


def test_linear_regression_model():
    model = build("linear", (10,), num_outputs=1)
    assert n_params(model) == 11 and model(torch.randn(4, 10)).shape == (4, 1)


def test_conv_models_refuse_flat_data():
    with pytest.raises(FtoolError, match=r"needs image data \(C, H, W\), got input shape \(10,\)"):
        build("convnet", (10,))
    for name, small in (("simplecnn", (3, 4, 4)), ("convnet", (1, 3, 3))):  # under a kernel, or pooled to nothing
        message = f"model: {name} cannot take inputs of shape {small}, too small"
        with pytest.raises(FtoolError, match=re.escape(message)):
            build(name, small)


def test_weight_init_schemes():
    torch.manual_seed(0)
    model = build("mlp", (1, 28, 28), hidden=[512])
    apply_init(model, "kaiming")
    first = model.net[1]
    assert first.weight.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.05)
    assert torch.all(first.bias == 0)
    apply_init(model, "xavier")
    bound = (6 / (784 + 512)) ** 0.5
    assert first.weight.abs().max().item() <= bound
    assert first.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
