"""Values as users write them (on the command line, in files), read without torch."""


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_size(value) -> bool:
    """A layer's or an image's size: a whole number >= 1 (not a bool, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
