"""The values a request carries, checked before anything uses them: numbers and names.

Every number (query values, ``Content-Length``) goes through :func:`parse_number`: a bad one
is a 400 naming the parameter, never a 500. A file name the page may show, log or download
under goes through :func:`display_name`. ``tests/test_serve_hostile.py`` sends them hostile
values.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from starlette.requests import Request

from inpaintkit.serve.errors import ApiError

#: Whole numbers and decimals as requests may spell them: ASCII digits only. Python's int()
#: and float() also take Unicode digits ('١٢٣'), '1_000', spaces, 'nan' and 'inf', and
#: str.isdigit() passes superscripts ('¹²³') that int() then refuses.
_WHOLE = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


def parse_number(
    name: str, value: str, low: float, high: float, fraction: bool = False
) -> int | float:
    """The one parser of every number a request carries (query values, Content-Length).

    ``value`` must be ASCII digits (with ``fraction``, optionally a decimal point and more
    digits) and lie in ``[low, high]``; anything else is an :class:`ApiError` 400 naming
    ``name``, the range and the value, never a 500.
    """
    pattern, kind = (_DECIMAL, "number") if fraction else (_WHOLE, "whole number")
    if pattern.fullmatch(value) is None or not low <= (number := float(value)) <= high:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ApiError(400, f"{name} must be a {kind} from {low:g} to {high:g}, got {shown!r}")
    return number if fraction else int(value)


def query_number(
    request: Request, name: str, low: float, high: float, fraction: bool = False
) -> int | float | None:
    """Query value ``name`` through :func:`parse_number`; None when absent or empty."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"{name} is given {len(values)} times; give it once")
    if not values or values[0] == "":
        return None
    return parse_number(name, values[0], low, high, fraction)


def display_name(name: str | None) -> str:
    """A file name the page may show, log and download under: no folders, no control or
    format characters (NUL, newlines, terminal escapes, bidirectional overrides), bounded."""
    printable = "".join(c for c in (name or "") if not unicodedata.category(c).startswith("C"))
    base = PurePosixPath(printable.replace("\\", "/")).name.strip()
    return base[:200] or "image.png"
