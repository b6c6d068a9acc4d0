"""Checks on rendered operator arguments, run before any request is sent.

Each check names the argument and says what is wrong, and never echoes more than a short prefix of
the value (a ``data:`` URI can be megabytes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from runway_provider.exceptions import RunwayInputError

MAX_PROMPT_CHARS = 1000
_RATIO = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*;base64,[A-Za-z0-9+/_-]+={0,2}$")


def require_prompt(value: Any, field: str = "prompt", max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A non-blank string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise RunwayInputError(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RunwayInputError(field, "must not be blank")
    if len(value) > max_chars:
        raise RunwayInputError(field, f"is {len(value)} characters long; the limit is {max_chars}")
    return value


def require_text(value: Any, field: str) -> str:
    """A non-blank string (model names, styles)."""
    if not isinstance(value, str) or not value.strip():
        raise RunwayInputError(field, f"expected a non-blank string, got {_show(value)}")
    return value.strip()


def require_media_uri(value: Any, field: str) -> str:
    """An http(s) URL with a host, or a ``data:`` URI with a media type and a payload."""
    if not isinstance(value, str) or not value.strip():
        raise RunwayInputError(field, f"expected an http(s) URL or a data: URI, got {_show(value)}")
    value = value.strip()
    if value[:5].lower() == "data:":
        if not _DATA_URI.match(value):
            raise RunwayInputError(
                field, f"is not a valid data: URI (expected data:<type>/<subtype>;base64,<base64 payload>): {_show(value)}"
            )
        return value
    return require_http_url(value, field, what="an http(s) URL or a data: URI")


def require_http_url(value: Any, field: str, what: str = "an http(s) URL") -> str:
    """An absolute http or https URL with a host and no whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise RunwayInputError(field, f"expected {what}, got {_show(value)}")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise RunwayInputError(field, f"expected {what}, got {_show(value)}")
    return value


def require_ratio(value: Any, field: str = "ratio") -> str:
    """``W:H`` with positive integers, e.g. ``1280:720``."""
    match = _RATIO.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise RunwayInputError(
            field, f"expected W:H with positive integers (e.g. '1280:720'), got {_show(value)}"
        )
    return f"{int(match.group(1))}:{int(match.group(2))}"


def require_options(value: Any, field: str = "options") -> dict[str, Any] | None:
    """None, or a JSON object (a rendered template may give its JSON text)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RunwayInputError(field, f"expected a dict or a JSON object, got {_show(value)}") from None
    if not isinstance(value, Mapping):
        raise RunwayInputError(field, f"expected a dict or a JSON object, got {type(value).__name__}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise RunwayInputError(field, f"must be JSON-serializable: {err}") from None
    return dict(value)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…'"
