"""The route table is the one declaration of a route: the hook, the operators and the tests follow it."""

from __future__ import annotations

import inspect
import logging

import pytest

from runway_provider import routes
from runway_provider.exceptions import RunwayInputError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.operators import runway as operators
from runway_provider.routes import ROUTES, OutputKind
from tests.test_behaviour import SUBMIT_CASES

pytestmark = pytest.mark.unit


def test_every_route_has_a_typed_hook_method_with_its_builders_signature():
    hook = RunwayHook()
    for route in ROUTES:
        method = getattr(hook, f"submit_{route.name}")
        assert inspect.signature(method).parameters == inspect.signature(route.build).parameters
        assert route.path in (method.__doc__ or "")
    submit_methods = {name for name in dir(RunwayHook) if name.startswith("submit_")}
    assert submit_methods == {f"submit_{route.name}" for route in ROUTES}


def test_every_route_is_posted_by_a_test_and_declared_by_one_operator():
    assert {method for method, *_ in SUBMIT_CASES} == {f"submit_{route.name}" for route in ROUTES}
    assert {path for _, _, path, _ in SUBMIT_CASES} == {route.path for route in ROUTES}
    declared = [
        cls.route
        for cls in vars(operators).values()
        if inspect.isclass(cls)
        and issubclass(cls, operators.BaseRunwaySubmitOperator)
        and "route" in vars(cls)
    ]
    assert sorted(route.name for route in declared) == sorted(route.name for route in ROUTES)


def test_an_operator_holds_every_field_its_builder_takes_and_templates_only_those():
    for cls in vars(operators).values():
        if (
            inspect.isclass(cls)
            and issubclass(cls, operators.BaseRunwaySubmitOperator)
            and "route" in vars(cls)
        ):
            fields = set(inspect.signature(cls.route.build).parameters)
            assert fields <= set(inspect.signature(cls.__init__).parameters), cls.__name__
            assert set(cls.template_fields) - {"reuse_from"} <= fields, cls.__name__


def test_the_family_decides_the_lookup_and_the_output_kind_is_declared():
    assert routes.task_request("a/b", RouteFamily.OFFICIAL) == ("GET", "/runwayml/v1/tasks/a%2Fb", None)
    assert routes.task_request("a/b", RouteFamily.REVERSE) == ("POST", "/runway/feed", {"task_id": "a/b"})
    assert {route.name for route in ROUTES if route.output is OutputKind.IMAGE} == {"text_to_image"}
    assert {route.name for route in ROUTES if route.needs_callback} == {
        "generate",
        "reverse_video_to_video",
        "act_one",
    }


def test_a_reverse_builder_refuses_a_body_without_a_webhook():
    with pytest.raises(RunwayInputError, match="callback_url"):
        routes.act_one(video="https://example.com/v.mp4", image="https://example.com/i.png")


# -- builders: what a DAG author reads for a wrong argument, and the body sent for a right one --

IMG = "https://cdn.example/still.png"
CLIP = "https://cdn.example/clip.mp4"
HOOK = "https://hooks.example/runway"
STILL = {"seconds": 5, "motion_vector": {"x": 0, "y": 0, "z": 0, "r": 0, "bg_x_pan": 0, "bg_y_pan": 0}}
NOT_MEDIA = "expected an http(s) URL or a data: URI, got"
BAD_RATIO = "expected W:H with positive integers (e.g. '1280:720')"
T2I_RATIOS = (
    "1920:1080, 1080:1920, 1024:1024, 1360:768, 1080:1080, 1168:880, 1440:1080, 1080:1440, "
    "1808:768, 2112:912, 1280:720, 720:1280, 720:720, 960:720, 720:960, 1680:720"
)
GEN4_TURBO_RATIOS = "1280:720, 720:1280, 1104:832, 832:1104, 960:960, 1584:672"
REVERSE_RATIOS = f"{GEN4_TURBO_RATIOS}, 1280:768, 768:1280, 16:9"

REFUSALS = [
    # reverse format: /runway/pro/*
    (routes.generate, {"prompt": " ", "image": IMG}, "Invalid `prompt`: must not be blank"),
    (routes.generate, {"prompt": "boat", "image": "boat.png"}, f"Invalid `image`: {NOT_MEDIA} 'boat.png'"),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "ratio": "16:0"},
        f"Invalid `ratio`: {BAD_RATIO} for model gen4, got '16:0'",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "ratio": "4:3"},
        f"Invalid `ratio`: expected one of {REVERSE_RATIOS} for model gen4, got '4:3'",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "model": "gen4_turbo", "ratio": "1:1"},
        f"Invalid `ratio`: expected one of {REVERSE_RATIOS} for model gen4_turbo, got '1:1'",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "model": "gen9", "ratio": "wide"},
        f"Invalid `ratio`: {BAD_RATIO} for model gen9, got 'wide'",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "model": ""},
        "Invalid `model`: expected a non-blank string, got ''",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "callback_url": None},
        "Invalid `callback_url`: CometAPI requires a webhook URL on this route",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "callback_url": "hooks"},
        "Invalid `callback_url`: expected an http(s) URL, got 'hooks'",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "style": " "},
        "Invalid `style`: expected a non-blank string, got ' '",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "options": "[]"},
        "Invalid `options`: expected a dict or a JSON object, got list",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": IMG, "last_image": "end.png"},
        f"Invalid `last_image`: {NOT_MEDIA} 'end.png'",
    ),
    (
        routes.generate,
        {"prompt": "boat"},
        "Invalid `options.seconds`: is required without an image: a positive whole number of seconds, got None",
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": "", "options": {"seconds": 5}},
        "Invalid `options.motion_vector`: is required without an image: {x, y, z, r, bg_x_pan, bg_y_pan} as numbers, got None",
    ),
    (
        routes.reverse_video_to_video,
        {"video": "clip.mp4", "prompt": "snow"},
        f"Invalid `video`: {NOT_MEDIA} 'clip.mp4'",
    ),
    (routes.reverse_video_to_video, {"video": CLIP, "prompt": ""}, "Invalid `prompt`: must not be blank"),
    (
        routes.reverse_video_to_video,
        {"video": CLIP, "prompt": "snow", "model": " "},
        "Invalid `model`: expected a non-blank string, got ' '",
    ),
    (
        routes.reverse_video_to_video,
        {"video": CLIP, "prompt": "snow", "callback_url": ""},
        "Invalid `callback_url`: CometAPI requires a webhook URL on this route",
    ),
    (
        routes.reverse_video_to_video,
        {"video": CLIP, "prompt": "snow", "options": "{"},
        "Invalid `options`: expected a dict or a JSON object, got '{'",
    ),
    (routes.act_one, {"video": "take.mp4", "image": IMG}, f"Invalid `video`: {NOT_MEDIA} 'take.mp4'"),
    (routes.act_one, {"video": CLIP, "image": "face.png"}, f"Invalid `image`: {NOT_MEDIA} 'face.png'"),
    (
        routes.act_one,
        {"video": CLIP, "image": IMG, "options": 3},
        "Invalid `options`: expected a dict or a JSON object, got int",
    ),
    # official format: /runwayml/v1/*
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": " "},
        "Invalid `model`: expected a non-blank string, got ' '",
    ),
    (
        routes.image_to_video,
        {"prompt_image": "still.png"},
        f"Invalid `prompt_image`: {NOT_MEDIA} 'still.png'",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "ratio": "1280:768"},
        f"Invalid `ratio`: expected one of {GEN4_TURBO_RATIOS} for model gen4_turbo, got '1280:768'",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": "gen9", "ratio": "wide"},
        f"Invalid `ratio`: {BAD_RATIO} for model gen9, got 'wide'",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "prompt_text": " "},
        "Invalid `prompt_text`: must not be blank",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": "gen4.5", "duration": 5},
        "Invalid `prompt_text`: is required for model gen4.5",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": "gen4.5", "prompt_text": "waves"},
        "Invalid `duration`: is required for model gen4.5",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "duration": 11},
        "Invalid `duration`: expected an integer among 2–10 for model gen4_turbo, got 11",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": "veo3.1", "duration": "5"},
        "Invalid `duration`: expected an integer among 4, 6, 8 for model veo3.1, got 5",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "model": "gen9", "duration": 61},
        "Invalid `duration`: expected an integer among 1–60 for model gen9, got 61",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "seed": -1},
        "Invalid `seed`: expected an integer among 0–4294967295, got -1",
    ),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "content_moderation": {"publicFigureThreshold": "off"}},
        "Invalid `content_moderation.publicFigureThreshold`: expected one of auto, low, got 'off'",
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "model": ""},
        "Invalid `model`: expected a non-blank string, got ''",
    ),
    (
        routes.video_to_video,
        {"video": "clip.mp4", "prompt_text": "snow"},
        f"Invalid `video`: {NOT_MEDIA} 'clip.mp4'",
    ),
    (routes.video_to_video, {"video": CLIP, "prompt_text": " "}, "Invalid `prompt_text`: must not be blank"),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "ratio": "1280x720"},
        f"Invalid `ratio`: {BAD_RATIO} for model gen4_aleph, got '1280x720'",
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "references": IMG},
        f"Invalid `references`: expected a list of image URIs, got '{IMG}'",
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "references": [IMG, "b.png"]},
        f"Invalid `references[1]`: {NOT_MEDIA} 'b.png'",
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "seed": "x"},
        "Invalid `seed`: expected an integer among 0–4294967295, got 'x'",
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "content_moderation": 5},
        'Invalid `content_moderation`: expected {"publicFigureThreshold": "auto" | "low"}, got 5',
    ),
    (
        routes.upscale_video,
        {"video": CLIP, "model": ""},
        "Invalid `model`: expected a non-blank string, got ''",
    ),
    (routes.upscale_video, {"video": "clip.mp4"}, f"Invalid `video`: {NOT_MEDIA} 'clip.mp4'"),
    (
        routes.text_to_image,
        {"prompt_text": "pier", "reference_images": [{"uri": IMG}], "model": ""},
        "Invalid `model`: expected a non-blank string, got ''",
    ),
    (
        routes.text_to_image,
        {"prompt_text": "", "reference_images": [{"uri": IMG}]},
        "Invalid `prompt_text`: must not be blank",
    ),
    (
        routes.text_to_image,
        {"prompt_text": "pier", "reference_images": [{"uri": IMG}], "ratio": "640:480"},
        f"Invalid `ratio`: expected one of {T2I_RATIOS} for model gen4_image, got '640:480'",
    ),
    (
        routes.text_to_image,
        {"prompt_text": "pier", "reference_images": [{"uri": IMG}], "model": "gen9_image", "ratio": "4:3:1"},
        f"Invalid `ratio`: {BAD_RATIO} for model gen9_image, got '4:3:1'",
    ),
    (
        routes.text_to_image,
        {"prompt_text": "pier", "reference_images": []},
        'Invalid `reference_images`: expected 1 to 3 {"uri", "tag"} references, got []',
    ),
    (
        routes.text_to_image,
        {"prompt_text": "pier", "reference_images": [{"uri": IMG}], "seed": 2**32},
        "Invalid `seed`: expected an integer among 0–4294967295, got 4294967296",
    ),
    (
        routes.text_to_image,
        {
            "prompt_text": "pier",
            "reference_images": [{"uri": IMG}],
            "content_moderation": {"threshold": "low"},
        },
        'Invalid `content_moderation`: expected {"publicFigureThreshold": "auto" | "low"}, got {\'threshold\': \'low\'}',
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "model": ""},
        "Invalid `model`: expected a non-blank string, got ''",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "character_type": "audio"},
        "Invalid `character_type`: expected one of image, video, got 'audio'",
    ),
    (
        routes.character_performance,
        {"character": "me.png", "reference_video": CLIP},
        f"Invalid `character`: {NOT_MEDIA} 'me.png'",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": "dance.mp4"},
        f"Invalid `reference_video`: {NOT_MEDIA} 'dance.mp4'",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "ratio": "wide"},
        f"Invalid `ratio`: {BAD_RATIO} for model act_two, got 'wide'",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "body_control": "yes"},
        "Invalid `body_control`: expected true or false, got 'yes'",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "expression_intensity": 0},
        "Invalid `expression_intensity`: expected an integer among 1–5, got 0",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "expression_intensity": "6"},
        "Invalid `expression_intensity`: expected an integer among 1–5, got 6",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "seed": True},
        "Invalid `seed`: expected an integer among 0–4294967295, got True",
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "content_moderation": ["low"]},
        'Invalid `content_moderation`: expected {"publicFigureThreshold": "auto" | "low"}, got [\'low\']',
    ),
]


def _with_hook(build, kwargs):
    # Reverse routes need a webhook; the cases that test the webhook give their own.
    return (
        {"callback_url": HOOK, **kwargs}
        if build in (routes.generate, routes.reverse_video_to_video, routes.act_one)
        else kwargs
    )


@pytest.mark.parametrize(
    ("build", "kwargs", "message"),
    REFUSALS,
    ids=[f"{build.__name__}-{'-'.join(kwargs)}" for build, kwargs, _ in REFUSALS],
)
def test_a_wrong_argument_is_refused_before_sending_naming_the_field_and_the_problem(build, kwargs, message):
    with pytest.raises(RunwayInputError) as caught:
        build(**_with_hook(build, kwargs))
    assert str(caught.value) == message


BODIES = [
    (
        routes.generate,
        {
            "prompt": "boat",
            "image": IMG,
            "ratio": " 768 : 1280 ",
            "model": " gen4 ",
            "style": "cinematic",
            "options": '{"seed": 1}',
            "last_image": IMG,
        },
        {
            "prompt": "boat",
            "image": IMG,
            "ratio": "768:1280",
            "model": "gen4",
            "callback_url": HOOK,
            "style": "cinematic",
            "options": {"seed": 1},
            "last_image": IMG,
        },
    ),
    (
        routes.generate,
        {"prompt": "boat", "image": "", "style": "", "last_image": "", "options": STILL},
        {"prompt": "boat", "ratio": "1280:720", "model": "gen4", "callback_url": HOOK, "options": STILL},
    ),
    (
        routes.reverse_video_to_video,
        {"video": CLIP, "prompt": "snow", "options": {"strength": 0.5}},
        {
            "video": CLIP,
            "prompt": "snow",
            "model": "gen4",
            "callback_url": HOOK,
            "options": {"strength": 0.5},
        },
    ),
    (
        routes.act_one,
        {"video": CLIP, "image": IMG, "options": {"motion": "subtle"}},
        {"video": CLIP, "image": IMG, "callback_url": HOOK, "options": {"motion": "subtle"}},
    ),
    (routes.act_one, {"video": CLIP, "image": IMG}, {"video": CLIP, "image": IMG, "callback_url": HOOK}),
    (
        routes.image_to_video,
        {"prompt_image": IMG, "prompt_text": "", "duration": "", "seed": "", "content_moderation": {}},
        {"model": "gen4_turbo", "promptImage": IMG, "ratio": "1280:720"},
    ),
    (
        routes.image_to_video,
        {
            "prompt_image": IMG,
            "model": "gen4.5",
            "prompt_text": "waves",
            "duration": "10",
            "ratio": "960:960",
            "seed": 0,
        },
        {
            "model": "gen4.5",
            "promptImage": IMG,
            "ratio": "960:960",
            "promptText": "waves",
            "duration": 10,
            "seed": 0,
        },
    ),
    (
        routes.image_to_video,
        {
            "prompt_image": IMG,
            "model": "gen9",
            "ratio": "2048:858",
            "duration": 60,
            "content_moderation": {"publicFigureThreshold": "low"},
        },
        {
            "model": "gen9",
            "promptImage": IMG,
            "ratio": "2048:858",
            "duration": 60,
            "contentModeration": {"publicFigureThreshold": "low"},
        },
    ),
    (
        routes.video_to_video,
        {
            "video": CLIP,
            "prompt_text": "snow",
            "model": "aleph2",
            "ratio": "720:1280",
            "references": [IMG, IMG],
            "seed": 9,
            "content_moderation": {"publicFigureThreshold": "auto"},
        },
        {
            "model": "aleph2",
            "videoUri": CLIP,
            "promptText": "snow",
            "ratio": "720:1280",
            "references": [{"type": "image", "uri": IMG}, {"type": "image", "uri": IMG}],
            "seed": 9,
            "contentModeration": {"publicFigureThreshold": "auto"},
        },
    ),
    (
        routes.video_to_video,
        {"video": CLIP, "prompt_text": "snow", "references": []},
        {"model": "gen4_aleph", "videoUri": CLIP, "promptText": "snow", "ratio": "1280:720"},
    ),
    (
        routes.upscale_video,
        {"video": CLIP, "model": "magnific_video_upscaler_creative"},
        {"model": "magnific_video_upscaler_creative", "videoUri": CLIP},
    ),
    (
        routes.text_to_image,
        {
            "prompt_text": "@hero",
            "reference_images": [{"uri": IMG, "tag": "hero"}],
            "model": "gen4_image_turbo",
            "ratio": "720:720",
            "seed": 4,
            "content_moderation": {"publicFigureThreshold": "low"},
        },
        {
            "model": "gen4_image_turbo",
            "promptText": "@hero",
            "ratio": "720:720",
            "referenceImages": [{"uri": IMG, "tag": "hero"}],
            "seed": 4,
            "contentModeration": {"publicFigureThreshold": "low"},
        },
    ),
    (
        routes.text_to_image,
        {
            "prompt_text": "pier",
            "reference_images": [{"uri": IMG}],
            "model": "gen9_image",
            "ratio": "640:480",
        },
        {"model": "gen9_image", "promptText": "pier", "ratio": "640:480", "referenceImages": [{"uri": IMG}]},
    ),
    (
        routes.character_performance,
        {
            "character": CLIP,
            "reference_video": CLIP,
            "character_type": "video",
            "body_control": False,
            "expression_intensity": "",
            "seed": 0,
            "content_moderation": {"publicFigureThreshold": "low"},
        },
        {
            "model": "act_two",
            "character": {"type": "video", "uri": CLIP},
            "reference": {"type": "video", "uri": CLIP},
            "ratio": "1280:720",
            "bodyControl": False,
            "seed": 0,
            "contentModeration": {"publicFigureThreshold": "low"},
        },
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "body_control": True, "expression_intensity": 1},
        {
            "model": "act_two",
            "character": {"type": "image", "uri": IMG},
            "reference": {"type": "video", "uri": CLIP},
            "ratio": "1280:720",
            "bodyControl": True,
            "expressionIntensity": 1,
        },
    ),
    (
        routes.character_performance,
        {"character": IMG, "reference_video": CLIP, "expression_intensity": "5"},
        {
            "model": "act_two",
            "character": {"type": "image", "uri": IMG},
            "reference": {"type": "video", "uri": CLIP},
            "ratio": "1280:720",
            "expressionIntensity": 5,
        },
    ),
]


@pytest.mark.parametrize(
    ("build", "kwargs", "body"),
    BODIES,
    ids=[f"{build.__name__}-{'-'.join(kwargs)}" for build, kwargs, _ in BODIES],
)
def test_a_route_sends_exactly_what_was_asked_in_its_own_schema(build, kwargs, body):
    assert build(**_with_hook(build, kwargs)) == body


def test_the_reverse_route_sends_an_unknown_models_ratio_with_one_warning(caplog):
    """Model names change faster than this provider: an unknown one's ratio is checked for its form only."""
    with caplog.at_level(logging.WARNING, logger="runway_provider.validation"):
        payload = routes.generate(prompt="boat", image=IMG, model="gen9", ratio="21:9", callback_url=HOOK)
    assert (payload["model"], payload["ratio"]) == ("gen9", "21:9")
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("Model 'gen9' is not one this provider knows for this route (gen4, gen4_turbo)")


@pytest.mark.parametrize("model", ["gen4", "gen4_turbo"])
@pytest.mark.parametrize("ratio", ["1280:720", "16:9", "768:1280"])
def test_the_reverse_route_takes_the_ratios_cometapi_documents(caplog, model, ratio):
    with caplog.at_level(logging.WARNING, logger="runway_provider.validation"):
        payload = routes.generate(prompt="boat", image=IMG, model=model, ratio=ratio, callback_url=HOOK)
    assert payload["ratio"] == ratio and caplog.records == []
