"""Values as users write them (on the command line, in files), read without torch."""


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
