"""Checks on rendered operator arguments, run before any request is sent.

Each check names the argument and says what is wrong, and never echoes more than a short prefix of
the value (a ``data:`` URI can be megabytes).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from runway_provider.exceptions import RunwayInputError

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 1000
# Runway takes data: URIs of a few megabytes; larger ones belong behind a URL.
MAX_DATA_URI_CHARS = 16 * 1024 * 1024
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


def require_positive_seconds(value: Any, field: str) -> float:
    """A positive number of seconds (a zero or negative interval would poll in a tight loop)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise RunwayInputError(field, f"must be a positive number of seconds, got {_show(value)}")
    return float(value)


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
        if len(value) > MAX_DATA_URI_CHARS:
            raise RunwayInputError(
                field,
                f"is a data: URI of {len(value):,} characters; the limit is {MAX_DATA_URI_CHARS:,} "
                "(about 12 MB of media): pass an https URL instead",
            )
        if not _DATA_URI.match(value):
            raise RunwayInputError(
                field,
                f"is not a valid data: URI (expected data:<type>/<subtype>;base64,<base64 payload>): {_show(value)}",
            )
        return str(value)
    return require_http_url(value, field, what="an http(s) URL or a data: URI")


def require_http_url(value: Any, field: str, what: str = "an http(s) URL") -> str:
    """An absolute http or https URL with a host and no whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise RunwayInputError(field, f"expected {what}, got {_show(value)}")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise RunwayInputError(field, f"expected {what}, got {_show(value)}")
    return str(value)


def require_ratio(
    value: Any, field: str = "ratio", *, model: str | None = None, choices: Sequence[str] | None = None
) -> str:
    """``W:H`` with positive integers, e.g. ``1280:720``; one of ``choices`` when the model's are known.

    :param value: The ratio given.
    :param field: The argument's name, for the error.
    :param model: The model it is for, named in the error: ratios differ per model.
    :param choices: The model's known ratios; None when the model is not known (form checked only).
    """
    for_model = f" for model {model}" if model else ""
    match = _RATIO.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise RunwayInputError(
            field, f"expected W:H with positive integers (e.g. '1280:720'){for_model}, got {_show(value)}"
        )
    ratio = f"{int(match.group(1))}:{int(match.group(2))}"
    if choices is not None and ratio not in choices:
        raise RunwayInputError(field, f"expected one of {', '.join(choices)}{for_model}, got {_show(value)}")
    return ratio


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


_MOTION_VECTOR_KEYS = ("x", "y", "z", "r", "bg_x_pan", "bg_y_pan")


def require_text_only_options(options: Mapping[str, Any] | None) -> None:
    """A video made from the prompt alone needs ``options.seconds`` and ``options.motion_vector``."""
    options = options or {}
    seconds = options.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise RunwayInputError(
            "options.seconds",
            f"is required without an image: a positive whole number of seconds, got {_show(seconds)}",
        )
    vector = options.get("motion_vector")
    if not isinstance(vector, Mapping):
        raise RunwayInputError(
            "options.motion_vector",
            f"is required without an image: {{{', '.join(_MOTION_VECTOR_KEYS)}}} as numbers, got {_show(vector)}",
        )
    for key in _MOTION_VECTOR_KEYS:
        value = vector.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RunwayInputError(f"options.motion_vector.{key}", f"expected a number, got {_show(value)}")


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…'"


# Known models of ``/runwayml/v1/image_to_video``: ratios and durations per model, from Runway's
# API reference and SDK and CometAPI's pages. Model names are advice, not a gate: CometAPI's and
# Runway's catalogs move independently (CometAPI validates gen3a_turbo, which Runway's SDK retired),
# so an unknown name is sent as given and the service decides.
IMAGE_TO_VIDEO_MODELS: dict[str, dict[str, Any]] = {
    "gen3a_turbo": {
        "ratios": ("1280:768", "768:1280"),
        "durations": (5, 10),
        "duration_required": False,
        "prompt_text_required": False,
    },
    "gen4_turbo": {
        "ratios": ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"),
        "durations": range(2, 11),
        "duration_required": False,
        "prompt_text_required": False,
    },
    "gen4.5": {
        "ratios": ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672"),
        "durations": range(2, 11),
        "duration_required": True,
        "prompt_text_required": True,
    },
    "veo3.1": {
        "ratios": ("1280:720", "720:1280", "1080:1920", "1920:1080"),
        "durations": (4, 6, 8),
        "duration_required": False,
        "prompt_text_required": False,
    },
    "veo3.1_fast": {
        "ratios": ("1280:720", "720:1280", "1080:1920", "1920:1080"),
        "durations": (4, 6, 8),
        "duration_required": False,
        "prompt_text_required": False,
    },
}
MAX_SEED = 4_294_967_295


def require_choice(value: Any, field: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise RunwayInputError(field, f"expected one of {', '.join(choices)}, got {_show(value)}")
    return str(value)


def require_model(value: Any, field: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    """A model name: a known one of the route, or any other name with one warning (the service decides)."""
    model = require_text(value, field)
    if model not in known:
        log.warning(
            "Model %r is not one this provider knows for this route (%s); sending it as given, the "
            "service decides. Its ratio and duration are not checked here.",
            model,
            ", ".join(known),
        )
    return model


def require_int(value: Any, field: str, *, allowed: Sequence[int] | range, model: str | None = None) -> int:
    """An integer among ``allowed`` (a rendered template may give its text).

    :param value: The value given.
    :param field: The argument's name, for the error.
    :param allowed: The integers accepted.
    :param model: The model ``allowed`` is for, named in the error.
    """
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        shown = (
            f"{allowed.start}–{allowed.stop - 1}"
            if isinstance(allowed, range)
            else ", ".join(map(str, allowed))
        )
        for_model = f" for model {model}" if model else ""
        raise RunwayInputError(field, f"expected an integer among {shown}{for_model}, got {_show(value)}")
    return value


def require_bool(value: Any, field: str) -> bool:
    """True or false (a rendered template gives its text: ``True``, ``false``)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise RunwayInputError(field, f"expected true or false, got {_show(value)}")
    return value


def require_prompt_image(value: Any, field: str = "prompt_image") -> str | list[dict[str, str]]:
    """A URL or ``data:`` URI, or first/last frames: ``[{"uri": ..., "position": "first"|"last"}]``."""
    if isinstance(value, str):
        return require_media_uri(value, field)
    if isinstance(value, Sequence) and value and all(isinstance(item, Mapping) for item in value):
        frames = []
        for index, item in enumerate(value):
            position = require_choice(item.get("position"), f"{field}[{index}].position", ("first", "last"))
            frames.append(
                {"uri": require_media_uri(item.get("uri"), f"{field}[{index}].uri"), "position": position}
            )
        positions = [frame["position"] for frame in frames]
        if len(set(positions)) != len(positions):
            raise RunwayInputError(field, "each position (first, last) may appear once")
        return frames
    raise RunwayInputError(
        field, f"expected a URL, a data: URI or a list of {{uri, position}} frames, got {_show(value)}"
    )


# Known models of the reverse ``/runway/pro/generate`` and their ratios. CometAPI documents gen4
# (image to video, default ratio 1280:720) and gen4_turbo (its validated text-to-video request),
# "16:9" in its text-to-video example, and these pixel ratios in its copy of Runway's image to
# video. Another model's ratio is checked for its form only, after require_model's one warning.
REVERSE_GENERATE_RATIOS = (
    *("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1280:768", "768:1280"),
    "16:9",
)
REVERSE_GENERATE_MODELS: dict[str, tuple[str, ...]] = {
    "gen4": REVERSE_GENERATE_RATIOS,
    "gen4_turbo": REVERSE_GENERATE_RATIOS,
}
VIDEO_TO_VIDEO_MODELS = ("gen4_aleph", "aleph2")
TEXT_TO_IMAGE_MODELS = ("gen4_image", "gen4_image_turbo")
TEXT_TO_IMAGE_RATIOS = (
    *("1920:1080", "1080:1920", "1024:1024", "1360:768", "1080:1080", "1168:880", "1440:1080", "1080:1440"),
    *("1808:768", "2112:912", "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720"),
)
# Runway: a tag names a reference in the prompt (@tag): 3-16 letters, digits or "_", a letter first.
_REFERENCE_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
UPSCALE_MODELS = ("upscale_v1", "magnific_video_upscaler_creative")
CHARACTER_PERFORMANCE_MODELS = ("act_two",)


def require_reference_images(value: Any, field: str = "reference_images") -> list[dict[str, str]]:
    """1 to 3 ``{"uri": ..., "tag": ...}`` (CometAPI refuses text-to-image without a reference)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not 1 <= len(value) <= 3:
        raise RunwayInputError(field, f'expected 1 to 3 {{"uri", "tag"}} references, got {_show(value)}')
    references = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) - {"uri", "tag"}:
            raise RunwayInputError(f"{field}[{index}]", f'expected {{"uri", "tag"}}, got {_show(item)}')
        reference = {"uri": require_media_uri(item.get("uri"), f"{field}[{index}].uri")}
        if item.get("tag") not in (None, ""):
            tag = item["tag"]
            if not isinstance(tag, str) or not _REFERENCE_TAG.match(tag):
                raise RunwayInputError(
                    f"{field}[{index}].tag",
                    f"expected 3-16 letters, digits or _, a letter first, got {_show(tag)}",
                )
            reference["tag"] = tag
        references.append(reference)
    return references


def require_seed(value: Any, field: str = "seed") -> int:
    """An integer seed, 0–4294967295."""
    return require_int(value, field, allowed=range(0, MAX_SEED + 1))


def require_content_moderation(value: Any, field: str = "content_moderation") -> dict[str, str]:
    """``{"publicFigureThreshold": "auto" | "low"}``."""
    if not isinstance(value, Mapping) or set(value) - {"publicFigureThreshold"}:
        raise RunwayInputError(
            field, f'expected {{"publicFigureThreshold": "auto" | "low"}}, got {_show(value)}'
        )
    threshold = require_choice(
        value.get("publicFigureThreshold", "auto"), f"{field}.publicFigureThreshold", ("auto", "low")
    )
    return {"publicFigureThreshold": threshold}
