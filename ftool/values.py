"""Values as users write them (on the command line, in files) and as ftool shows them, without torch."""

import math


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_finite_number(value) -> bool:
    """A table's cell that is a number a model can take: finite, of any type but bool (JSON's true is
    a category, not 1)."""
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def is_size(value) -> bool:
    """A layer's or an image's size: a whole number >= 1 (not a bool, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def figure(value: float) -> str:
    """A metric as the tables show it: 4 decimals; a huge one (a diverging loss: 1.674e+19) in
    powers of ten, which 20 digits would hide."""
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"
