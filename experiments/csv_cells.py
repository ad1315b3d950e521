"""CSV cells that no spreadsheet runs: every CSV the product writes passes its text through :func:`csv_cell`."""

from __future__ import annotations

# A text cell a spreadsheet would read as a formula (OWASP's list; tab and CR too).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """The value as a CSV cell that no spreadsheet runs: text starting like a formula gets a leading
    apostrophe (numbers stay numbers, so a negative lift is still -0.02)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value
