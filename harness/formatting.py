"""How numbers read in tables (terminal, HTML, Markdown): one spelling everywhere."""


def format_seconds(seconds: float | None) -> str:
    """``1.23 ms``-style, three significant digits; ``-`` for a missing value."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
