"""CometAPI's Runway routes, declared once: what each creates, where, and how its body is built.

A :class:`Route` is the single place a create route is named: its path, its family (which decides
how its tasks are looked up and whether they can be cancelled), what it outputs, and the builder
that checks the caller's arguments and returns the request body. The hook sends any route
(``RunwayHook.submit(route, payload)``) and derives one typed ``submit_<name>`` method per route
from its builder; each operator declares its route and keeps its own documented signature.

Adding a route: one builder below, one :class:`Route` entry in :data:`ROUTES`, one handler in the
emulator, and their tests (``docs/routes.md``, "Adding a route").

Builders check everything before anything is sent, and raise
:class:`~runway_provider.exceptions.RunwayInputError` naming the field and what is wrong with it.
Their arguments are typed as a DAG author writes them; the values they receive are rendered
templates, so every check also guards the type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec
from urllib.parse import quote

from runway_provider.exceptions import RunwayInputError
from runway_provider.models import OutputKind, RouteFamily
from runway_provider.validation import (
    CHARACTER_PERFORMANCE_MODELS,
    IMAGE_TO_VIDEO_MODELS,
    REVERSE_GENERATE_MODELS,
    TEXT_TO_IMAGE_MODELS,
    TEXT_TO_IMAGE_RATIOS,
    UPSCALE_MODELS,
    VIDEO_TO_VIDEO_MODELS,
    require_bool,
    require_choice,
    require_content_moderation,
    require_http_url,
    require_int,
    require_media_uri,
    require_model,
    require_options,
    require_prompt,
    require_prompt_image,
    require_ratio,
    require_reference_images,
    require_seed,
    require_text,
    require_text_only_options,
)

P = ParamSpec("P")

# Task lookups: reverse-format tasks through the feed, official-format ones by id.
FEED_PATH = "/runway/feed"
OFFICIAL_TASKS_PATH = "/runwayml/v1/tasks"


@dataclass(frozen=True)
class Route(Generic[P]):
    """One create route of CometAPI's Runway API.

    :param name: The route's short name; the hook's convenience method is ``submit_<name>``.
    :param path: The create path, e.g. ``/runway/pro/generate``.
    :param family: How its tasks are looked up (and whether they can be cancelled).
    :param output: Whether its task outputs a video or an image.
    :param build: Checks the arguments and returns the request body; sends nothing.
    """

    name: str
    path: str
    family: RouteFamily
    output: OutputKind
    build: Callable[P, dict[str, Any]]

    @property
    def needs_callback(self) -> bool:
        """Reverse-format creates require a webhook; the hook fills in the connection's default."""
        return self.family is RouteFamily.REVERSE


def family_of_path(path: str) -> RouteFamily | None:
    """The family of a create path: ``/runwayml/v1/...`` is official, ``/runway/...`` reverse; None otherwise."""
    if path.startswith("/runwayml/v1/"):
        return RouteFamily.OFFICIAL
    if path.startswith("/runway/"):
        return RouteFamily.REVERSE
    return None


def output_of(path: str) -> OutputKind:
    """What a create path outputs: the route table's answer, else an image only when the path says so."""
    known = next((route.output for route in ROUTES if route.path == path), None)
    if known is not None:
        return known
    return OutputKind.IMAGE if "image" in path.rsplit("/", 1)[-1].split("_to_")[-1] else OutputKind.VIDEO


def task_request(runway_task_id: str, family: RouteFamily) -> tuple[str, str, dict[str, Any] | None]:
    """``(method, path, body)`` of the lookup of one task on its family's route."""
    if family == RouteFamily.OFFICIAL:
        return "GET", task_path(runway_task_id), None
    return "POST", FEED_PATH, {"task_id": runway_task_id}


def task_path(runway_task_id: str) -> str:
    """The official-format task's own path (``GET`` to look it up, ``DELETE`` to cancel it)."""
    return f"{OFFICIAL_TASKS_PATH}/{quote(runway_task_id, safe='')}"


# -- builders: reverse format (CometAPI's own schema under /runway/pro) ------------------------


def generate(
    *,
    prompt: str,
    image: str | None = None,
    ratio: str = "1280:720",
    model: str = "gen4",
    callback_url: str | None = None,
    style: str | None = None,
    options: Mapping[str, Any] | None = None,
    last_image: str | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runway/pro/generate``: a video from an image, or from the prompt alone.

    :param prompt: What the video shows; at most 1000 characters.
    :param image: The source image: an http(s) URL or a ``data:`` URI. Without one the video is
        made from the prompt alone, and ``options`` must give ``seconds`` and ``motion_vector``.
    :param ratio: ``W:H``, one of a known model's ratios (``REVERSE_GENERATE_RATIOS``), e.g. ``1280:720``.
    :param model: Runway model, e.g. ``gen4``; an unknown name is sent as given with a warning.
    :param callback_url: Webhook for the result (CometAPI requires one).
    :param style: Optional style, e.g. ``cinematic``.
    :param options: Optional advanced options (``seconds``, ``motion_vector``, ...).
    :param last_image: Optional end frame: an http(s) URL or a ``data:`` URI.
    """
    payload: dict[str, Any] = {"prompt": require_prompt(prompt)}
    if image not in (None, ""):
        payload["image"] = require_media_uri(image, "image")
    model = require_model(model, "model", REVERSE_GENERATE_MODELS)
    payload |= {
        "ratio": require_ratio(ratio, model=model, choices=REVERSE_GENERATE_MODELS.get(model)),
        "model": model,
        "callback_url": _callback(callback_url),
    }
    if style not in (None, ""):
        payload["style"] = require_text(style, "style")
    _add_options(payload, options)
    if "image" not in payload:
        # CometAPI's text-only video requires both (its wrapper schema marks them required).
        require_text_only_options(payload.get("options"))
    if last_image not in (None, ""):
        payload["last_image"] = require_media_uri(last_image, "last_image")
    return payload


def reverse_video_to_video(
    *,
    video: str,
    prompt: str,
    model: str = "gen4",
    callback_url: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runway/pro/video2video`` (video style redraw).

    :param video: The source video, an http(s) URL or a ``data:`` URI.
    :param prompt: The new style; at most 1000 characters.
    :param model: Runway model, e.g. ``gen4``.
    :param callback_url: Webhook for the result (CometAPI requires one).
    :param options: Optional advanced options.
    """
    payload: dict[str, Any] = {
        "video": require_media_uri(video, "video"),
        "prompt": require_prompt(prompt),
        "model": require_text(model, "model"),
        "callback_url": _callback(callback_url),
    }
    _add_options(payload, options)
    return payload


def act_one(
    *,
    video: str,
    image: str,
    callback_url: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runway/pro/act_one`` (Act-One expression transfer).

    :param video: The driving performance video, an http(s) URL or a ``data:`` URI.
    :param image: The character image, an http(s) URL or a ``data:`` URI.
    :param callback_url: Webhook for the result (CometAPI requires one).
    :param options: Optional advanced options.
    """
    payload: dict[str, Any] = {
        "video": require_media_uri(video, "video"),
        "image": require_media_uri(image, "image"),
        "callback_url": _callback(callback_url),
    }
    _add_options(payload, options)
    return payload


# -- builders: official format (Runway's own schema under /runwayml/v1) -----------------------


def image_to_video(
    *,
    prompt_image: str | Sequence[Mapping[str, str]],
    model: str = "gen4_turbo",
    prompt_text: str | None = None,
    ratio: str = "1280:720",
    duration: int | str | None = None,
    seed: int | None = None,
    content_moderation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runwayml/v1/image_to_video``: a known model's ratios and durations are checked.

    :param prompt_image: The first frame (https URL or ``data:`` URI), or first/last frames as
        ``[{"uri": ..., "position": "first"|"last"}]``.
    :param model: Runway model; an unknown name is sent as given with a warning.
    :param prompt_text: What happens in the video; required by some models.
    :param ratio: Output size, one of a known model's ratios.
    :param duration: Seconds of video, within a known model's durations.
    :param seed: Optional seed, 0 to 4294967295.
    :param content_moderation: Optional ``{"publicFigureThreshold": "auto"|"low"}``.
    """
    model = require_model(model, "model", IMAGE_TO_VIDEO_MODELS)
    # A known model's ratios and durations are checked; an unknown one's only for their form.
    rules = IMAGE_TO_VIDEO_MODELS.get(model)
    payload: dict[str, Any] = {
        "model": model,
        "promptImage": require_prompt_image(prompt_image),
        "ratio": require_ratio(ratio, model=model, choices=rules["ratios"] if rules else None),
    }
    if prompt_text not in (None, ""):
        payload["promptText"] = require_prompt(prompt_text, "prompt_text")
    elif rules and rules["prompt_text_required"]:
        raise RunwayInputError("prompt_text", f"is required for model {model}")
    if duration not in (None, ""):
        payload["duration"] = require_int(
            duration, "duration", allowed=rules["durations"] if rules else range(1, 61), model=model
        )
    elif rules and rules["duration_required"]:
        raise RunwayInputError("duration", f"is required for model {model}")
    _add_common(payload, seed=seed, content_moderation=content_moderation)
    return payload


def video_to_video(
    *,
    video: str,
    prompt_text: str,
    model: str = "gen4_aleph",
    ratio: str = "1280:720",
    references: Sequence[str] | None = None,
    seed: int | None = None,
    content_moderation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runwayml/v1/video_to_video`` (restyle a video from a prompt).

    :param video: The source video, an https URL or a ``data:`` URI.
    :param prompt_text: The new look; at most 1000 characters.
    :param model: Runway model, e.g. ``gen4_aleph``.
    :param ratio: Output size ``W:H``.
    :param references: Optional image URIs guiding the style.
    :param seed: Optional seed.
    :param content_moderation: Optional ``{"publicFigureThreshold": ...}``.
    """
    model = require_model(model, "model", VIDEO_TO_VIDEO_MODELS)
    payload: dict[str, Any] = {
        "model": model,
        "videoUri": require_media_uri(video, "video"),
        "promptText": require_prompt(prompt_text, "prompt_text"),
        "ratio": require_ratio(ratio, model=model),
    }
    if references:
        if not isinstance(references, Sequence) or isinstance(references, str):
            raise RunwayInputError("references", f"expected a list of image URIs, got {references!r:.60}")
        payload["references"] = [
            {"type": "image", "uri": require_media_uri(uri, f"references[{index}]")}
            for index, uri in enumerate(references)
        ]
    _add_common(payload, seed=seed, content_moderation=content_moderation)
    return payload


def upscale_video(*, video: str, model: str = "upscale_v1") -> dict[str, Any]:
    """Body of ``POST /runwayml/v1/video_upscale`` (4x upscale, up to 4096 px).

    :param video: The video to upscale, an https URL or a ``data:`` URI.
    :param model: Runway model, e.g. ``upscale_v1``.
    """
    return {
        "model": require_model(model, "model", UPSCALE_MODELS),
        "videoUri": require_media_uri(video, "video"),
    }


def text_to_image(
    *,
    prompt_text: str,
    reference_images: Sequence[Mapping[str, str]],
    model: str = "gen4_image",
    ratio: str = "1920:1080",
    seed: int | None = None,
    content_moderation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runwayml/v1/text_to_image`` (storyboards, first frames).

    :param prompt_text: What the image shows; at most 1000 characters.
    :param reference_images: 1 to 3 ``{"uri": ..., "tag": ...}`` (CometAPI requires one).
    :param model: Runway model, e.g. ``gen4_image``.
    :param ratio: Output size, one of a known model's ratios.
    :param seed: Optional seed.
    :param content_moderation: Optional ``{"publicFigureThreshold": ...}``.
    """
    model = require_model(model, "model", TEXT_TO_IMAGE_MODELS)
    payload: dict[str, Any] = {
        "model": model,
        "promptText": require_prompt(prompt_text, "prompt_text"),
        "ratio": require_ratio(
            ratio, model=model, choices=TEXT_TO_IMAGE_RATIOS if model in TEXT_TO_IMAGE_MODELS else None
        ),
        "referenceImages": require_reference_images(reference_images),
    }
    _add_common(payload, seed=seed, content_moderation=content_moderation)
    return payload


def character_performance(
    *,
    character: str,
    reference_video: str,
    character_type: str = "image",
    model: str = "act_two",
    ratio: str = "1280:720",
    body_control: bool | str | None = None,
    expression_intensity: int | str | None = None,
    seed: int | None = None,
    content_moderation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Body of ``POST /runwayml/v1/character_performance`` (Act-Two: animate a character).

    :param character: The character, an image or a video (https URL or ``data:`` URI).
    :param reference_video: The performance to copy, an https URL or a ``data:`` URI.
    :param character_type: ``image`` or ``video``.
    :param model: Runway model, e.g. ``act_two``.
    :param ratio: Output size ``W:H``.
    :param body_control: Copy body movement as well as the face (also ``true``/``false`` as text).
    :param expression_intensity: 1 to 5.
    :param seed: Optional seed.
    :param content_moderation: Optional ``{"publicFigureThreshold": ...}``.
    """
    model = require_model(model, "model", CHARACTER_PERFORMANCE_MODELS)
    payload: dict[str, Any] = {
        "model": model,
        "character": {
            "type": require_choice(character_type, "character_type", ("image", "video")),
            "uri": require_media_uri(character, "character"),
        },
        "reference": {"type": "video", "uri": require_media_uri(reference_video, "reference_video")},
        "ratio": require_ratio(ratio, model=model),
    }
    if body_control not in (None, ""):
        payload["bodyControl"] = require_bool(body_control, "body_control")
    if expression_intensity not in (None, ""):
        payload["expressionIntensity"] = require_int(
            expression_intensity, "expression_intensity", allowed=range(1, 6)
        )
    _add_common(payload, seed=seed, content_moderation=content_moderation)
    return payload


# -- the table ----------------------------------------------------------------------------------

_REVERSE, _OFFICIAL = RouteFamily.REVERSE, RouteFamily.OFFICIAL
_VIDEO, _IMAGE = OutputKind.VIDEO, OutputKind.IMAGE

GENERATE = Route("generate", "/runway/pro/generate", _REVERSE, _VIDEO, generate)
REVERSE_VIDEO_TO_VIDEO = Route(
    "reverse_video_to_video", "/runway/pro/video2video", _REVERSE, _VIDEO, reverse_video_to_video
)
ACT_ONE = Route("act_one", "/runway/pro/act_one", _REVERSE, _VIDEO, act_one)
IMAGE_TO_VIDEO = Route("image_to_video", "/runwayml/v1/image_to_video", _OFFICIAL, _VIDEO, image_to_video)
VIDEO_TO_VIDEO = Route("video_to_video", "/runwayml/v1/video_to_video", _OFFICIAL, _VIDEO, video_to_video)
UPSCALE_VIDEO = Route("upscale_video", "/runwayml/v1/video_upscale", _OFFICIAL, _VIDEO, upscale_video)
TEXT_TO_IMAGE = Route("text_to_image", "/runwayml/v1/text_to_image", _OFFICIAL, _IMAGE, text_to_image)
CHARACTER_PERFORMANCE = Route(
    "character_performance",
    "/runwayml/v1/character_performance",
    _OFFICIAL,
    _VIDEO,
    character_performance,
)

ROUTES: tuple[Route[Any], ...] = (
    GENERATE,
    REVERSE_VIDEO_TO_VIDEO,
    ACT_ONE,
    IMAGE_TO_VIDEO,
    VIDEO_TO_VIDEO,
    UPSCALE_VIDEO,
    TEXT_TO_IMAGE,
    CHARACTER_PERFORMANCE,
)


# -- any route by name ---------------------------------------------------------------------------


def path_family(path: Any, field: str = "path") -> RouteFamily:
    """The family of a create path, read from its prefix (a templated path's prefix is written out);
    a clear error naming ``field`` for anything else."""
    family = family_of_path(path) if isinstance(path, str) else None
    if family is not None and path.rstrip("/") not in ("/runwayml/v1", "/runway"):
        return family
    raise RunwayInputError(
        field,
        "expected a CometAPI Runway create path starting with /runwayml/v1/ (the official format) or "
        f"/runway/ (CometAPI's reverse format), got {path!r:.80}",
    )


def raw_route(path: Any, field: str = "path") -> Route[...]:
    """A :class:`Route` for a create path the table does not list; its body is given whole (:func:`raw_body`).

    :param path: The create path, e.g. ``/runwayml/v1/image_to_video``.
    :param field: The argument's name, for the error.
    """
    family = path_family(path, field)
    if any(character.isspace() or character in "?#%\\" for character in path) or "/../" in f"{path}/":
        raise RunwayInputError(
            field, f"expected a plain path without a query, spaces or '..', got {path!r:.80}"
        )
    if path.rstrip("/") in (FEED_PATH, OFFICIAL_TASKS_PATH) or path.startswith(f"{OFFICIAL_TASKS_PATH}/"):
        raise RunwayInputError(field, f"{path!r} looks a task up; give the path of a create route")
    name = path.strip("/").replace("/", "_").replace(".", "_")
    return Route(name, path, family, output_of(path), raw_body)


def raw_body(*, body: Mapping[str, Any] | str, callback_url: str | None = None) -> dict[str, Any]:
    """Body of a create on a path the table does not list: ``body`` as given, checked to be a JSON object.

    :param body: The request body: a dict, or JSON text of an object (what a rendered template gives).
    :param callback_url: Added when ``body`` has none (the reverse routes' webhook).
    """
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as err:
            raise RunwayInputError(
                "body", f"expected a JSON object, got text that is not JSON ({err})"
            ) from None
    if not isinstance(body, Mapping) or not all(isinstance(key, str) for key in body):
        raise RunwayInputError("body", f"expected a JSON object, got {type(body).__name__}")
    try:
        payload: dict[str, Any] = json.loads(json.dumps(dict(body), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise RunwayInputError("body", f"holds a value JSON cannot carry ({err})") from None
    if not payload:
        raise RunwayInputError("body", "is empty; give the route's fields")
    if callback_url not in (None, "") and payload.get("callback_url") in (None, ""):
        payload["callback_url"] = require_http_url(callback_url, "callback_url")
    return payload


def _callback(callback_url: Any) -> str:
    if callback_url in (None, ""):
        raise RunwayInputError("callback_url", "CometAPI requires a webhook URL on this route")
    return require_http_url(callback_url, "callback_url")


def _add_options(payload: dict[str, Any], options: Any) -> None:
    if (checked_options := require_options(options)) is not None:
        payload["options"] = checked_options


def _add_common(payload: dict[str, Any], *, seed: Any, content_moderation: Any) -> None:
    if seed not in (None, ""):
        payload["seed"] = require_seed(seed)
    if content_moderation:
        payload["contentModeration"] = require_content_moderation(content_moderation)
