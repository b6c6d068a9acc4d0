"""Input checks: what a DAG author gets back for a wrong argument, before anything is sent.

Each refusal names the argument and says what is wrong, with at most a short prefix of the value:
the whole message is what the author reads in the task log, so it is asserted whole.
"""

from __future__ import annotations

import logging

import pytest

from runway_provider import validation as v
from runway_provider.exceptions import RunwayInputError

pytestmark = pytest.mark.unit

IMG = "https://cdn.example/a.png"
PNG_DATA = "data:image/png;base64,iVBORw0KGgo="
STILL = {"x": 0, "y": 0, "z": 0, "r": 0, "bg_x_pan": 0, "bg_y_pan": 0.5}
MOTION_KEYS = "{x, y, z, r, bg_x_pan, bg_y_pan}"


def refusal(check, *args, **kwargs) -> str:
    with pytest.raises(RunwayInputError) as caught:
        check(*args, **kwargs)
    return str(caught.value)


REFUSED = [
    # prompts
    (v.require_prompt, (42,), "Invalid `prompt`: expected a string, got int"),
    (v.require_prompt, ("   ",), "Invalid `prompt`: must not be blank"),
    (v.require_prompt, ("x" * 1001,), "Invalid `prompt`: is 1001 characters long; the limit is 1000"),
    (
        v.require_prompt,
        ("abcd", "prompt_text", 3),
        "Invalid `prompt_text`: is 4 characters long; the limit is 3",
    ),
    # intervals
    (
        v.require_positive_seconds,
        (0, "poke_interval"),
        "Invalid `poke_interval`: must be a positive number of seconds, got 0",
    ),
    (
        v.require_positive_seconds,
        (-1.5, "timeout"),
        "Invalid `timeout`: must be a positive number of seconds, got -1.5",
    ),
    (
        v.require_positive_seconds,
        (True, "timeout"),
        "Invalid `timeout`: must be a positive number of seconds, got True",
    ),
    (
        v.require_positive_seconds,
        ("5", "timeout"),
        "Invalid `timeout`: must be a positive number of seconds, got '5'",
    ),
    # plain text
    (v.require_text, ("  ", "model"), "Invalid `model`: expected a non-blank string, got '  '"),
    (v.require_text, (None, "style"), "Invalid `style`: expected a non-blank string, got None"),
    # media: URLs and data: URIs
    (v.require_media_uri, ("", "image"), "Invalid `image`: expected an http(s) URL or a data: URI, got ''"),
    (v.require_media_uri, (7, "image"), "Invalid `image`: expected an http(s) URL or a data: URI, got 7"),
    (
        v.require_media_uri,
        ("ftp://cdn/a.png", "image"),
        "Invalid `image`: expected an http(s) URL or a data: URI, got 'ftp://cdn/a.png'",
    ),
    (
        v.require_media_uri,
        ("https:///a.png", "video"),
        "Invalid `video`: expected an http(s) URL or a data: URI, got 'https:///a.png'",
    ),
    (
        v.require_media_uri,
        ("https://cdn/a b.png", "video"),
        "Invalid `video`: expected an http(s) URL or a data: URI, got 'https://cdn/a b.png'",
    ),
    (
        v.require_media_uri,
        ("data:image/png,iVBORw0KGgo=", "image"),
        "Invalid `image`: is not a valid data: URI (expected data:<type>/<subtype>;base64,<base64 payload>): "
        "'data:image/png,iVBORw0KGgo='",
    ),
    (
        v.require_http_url,
        ("example.com/hook", "callback_url"),
        "Invalid `callback_url`: expected an http(s) URL, got 'example.com/hook'",
    ),
    (v.require_http_url, (None, "callback_url"), "Invalid `callback_url`: expected an http(s) URL, got None"),
    (v.require_http_url, ("  ", "callback_url"), "Invalid `callback_url`: expected an http(s) URL, got '  '"),
    # ratios
    (
        v.require_ratio,
        ("16/9",),
        "Invalid `ratio`: expected W:H with positive integers (e.g. '1280:720'), got '16/9'",
    ),
    (
        v.require_ratio,
        ("0:720",),
        "Invalid `ratio`: expected W:H with positive integers (e.g. '1280:720'), got '0:720'",
    ),
    (
        v.require_ratio,
        ("1280:0",),
        "Invalid `ratio`: expected W:H with positive integers (e.g. '1280:720'), got '1280:0'",
    ),
    (
        v.require_ratio,
        (1280,),
        "Invalid `ratio`: expected W:H with positive integers (e.g. '1280:720'), got 1280",
    ),
    # options
    (
        v.require_options,
        ("{not json",),
        "Invalid `options`: expected a dict or a JSON object, got '{not json'",
    ),
    (v.require_options, ("[1, 2]",), "Invalid `options`: expected a dict or a JSON object, got list"),
    (
        v.require_options,
        ({"when": {1, 2}},),
        "Invalid `options`: must be JSON-serializable: Object of type set is not JSON serializable",
    ),
    # choices and integers (a rendered template gives text)
    (
        v.require_choice,
        ("video ", "character_type", ("image", "video")),
        "Invalid `character_type`: expected one of image, video, got 'video '",
    ),
    (
        v.require_int,
        ("7", "duration"),
        {"allowed": (4, 6, 8)},
        "Invalid `duration`: expected an integer among 4, 6, 8, got 7",
    ),
    (
        v.require_int,
        ("-3", "duration"),
        {"allowed": range(2, 11)},
        "Invalid `duration`: expected an integer among 2–10, got -3",
    ),
    (
        v.require_int,
        ("X5", "duration"),
        {"allowed": range(2, 11)},
        "Invalid `duration`: expected an integer among 2–10, got 'X5'",
    ),
    (
        v.require_int,
        (True, "expression_intensity"),
        {"allowed": range(1, 6)},
        "Invalid `expression_intensity`: expected an integer among 1–5, got True",
    ),
    (
        v.require_int,
        (5.0, "duration"),
        {"allowed": range(2, 11)},
        "Invalid `duration`: expected an integer among 2–10, got 5.0",
    ),
    (v.require_seed, (-1,), "Invalid `seed`: expected an integer among 0–4294967295, got -1"),
    (
        v.require_seed,
        (4_294_967_296,),
        "Invalid `seed`: expected an integer among 0–4294967295, got 4294967296",
    ),
    # a video from the prompt alone
    (
        v.require_text_only_options,
        (None,),
        "Invalid `options.seconds`: is required without an image: a positive whole number of seconds, got None",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 0},),
        "Invalid `options.seconds`: is required without an image: a positive whole number of seconds, got 0",
    ),
    (
        v.require_text_only_options,
        ({"seconds": True},),
        "Invalid `options.seconds`: is required without an image: a positive whole number of seconds, got True",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 2.5},),
        "Invalid `options.seconds`: is required without an image: a positive whole number of seconds, got 2.5",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 5},),
        f"Invalid `options.motion_vector`: is required without an image: {MOTION_KEYS} as numbers, got None",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 5, "motion_vector": "left"},),
        f"Invalid `options.motion_vector`: is required without an image: {MOTION_KEYS} as numbers, got 'left'",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 5, "motion_vector": {**STILL, "r": "1"}},),
        "Invalid `options.motion_vector.r`: expected a number, got '1'",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 5, "motion_vector": {**STILL, "x": True}},),
        "Invalid `options.motion_vector.x`: expected a number, got True",
    ),
    (
        v.require_text_only_options,
        ({"seconds": 5, "motion_vector": {k: 0 for k in STILL if k != "bg_y_pan"}},),
        "Invalid `options.motion_vector.bg_y_pan`: expected a number, got None",
    ),
    # first and last frames
    (
        v.require_prompt_image,
        (None,),
        "Invalid `prompt_image`: expected a URL, a data: URI or a list of {uri, position} frames, got None",
    ),
    (
        v.require_prompt_image,
        ([],),
        "Invalid `prompt_image`: expected a URL, a data: URI or a list of {uri, position} frames, got []",
    ),
    (
        v.require_prompt_image,
        ([IMG],),
        "Invalid `prompt_image`: expected a URL, a data: URI or a list of {uri, position} frames, got ['https://cdn.example/a.png']",
    ),
    (
        v.require_prompt_image,
        ("ftp://x",),
        "Invalid `prompt_image`: expected an http(s) URL or a data: URI, got 'ftp://x'",
    ),
    (
        v.require_prompt_image,
        ([{"uri": IMG, "position": "middle"}],),
        "Invalid `prompt_image[0].position`: expected one of first, last, got 'middle'",
    ),
    (
        v.require_prompt_image,
        ([{"uri": IMG, "position": "first"}, {"uri": "x", "position": "last"}],),
        "Invalid `prompt_image[1].uri`: expected an http(s) URL or a data: URI, got 'x'",
    ),
    (
        v.require_prompt_image,
        ([{"uri": IMG, "position": "last"}, {"uri": IMG, "position": "last"}],),
        "Invalid `prompt_image`: each position (first, last) may appear once",
    ),
    # text-to-image references
    (
        v.require_reference_images,
        ("hero.png",),
        'Invalid `reference_images`: expected 1 to 3 {"uri", "tag"} references, got \'hero.png\'',
    ),
    (
        v.require_reference_images,
        ([],),
        'Invalid `reference_images`: expected 1 to 3 {"uri", "tag"} references, got []',
    ),
    (
        v.require_reference_images,
        (None,),
        'Invalid `reference_images`: expected 1 to 3 {"uri", "tag"} references, got None',
    ),
    (
        v.require_reference_images,
        ([IMG],),
        'Invalid `reference_images[0]`: expected {"uri", "tag"}, got \'https://cdn.example/a.png\'',
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG, "name": "hero"}],),
        "Invalid `reference_images[0]`: expected {\"uri\", \"tag\"}, got {'uri': 'https://cdn.example/a.png', 'name': 'hero'}",
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG}, {"uri": "a.png"}],),
        "Invalid `reference_images[1].uri`: expected an http(s) URL or a data: URI, got 'a.png'",
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG, "tag": "1ab"}],),
        "Invalid `reference_images[0].tag`: expected 3-16 letters, digits or _, a letter first, got '1ab'",
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG, "tag": 123}],),
        "Invalid `reference_images[0].tag`: expected 3-16 letters, digits or _, a letter first, got 123",
    ),
    # moderation
    (
        v.require_content_moderation,
        (5,),
        'Invalid `content_moderation`: expected {"publicFigureThreshold": "auto" | "low"}, got 5',
    ),
    (
        v.require_content_moderation,
        ("low",),
        'Invalid `content_moderation`: expected {"publicFigureThreshold": "auto" | "low"}, got \'low\'',
    ),
    (
        v.require_content_moderation,
        ({"publicFigureThreshold": "low", "other": 1},),
        "Invalid `content_moderation`: expected {\"publicFigureThreshold\": \"auto\" | \"low\"}, got {'publicFigureThreshold': 'low', 'other': 1}",
    ),
    (
        v.require_content_moderation,
        ({"publicFigureThreshold": "high"},),
        "Invalid `content_moderation.publicFigureThreshold`: expected one of auto, low, got 'high'",
    ),
]


def _case_id(case) -> str:
    return f"{case[0].__name__}-{case[1][0]!r:.30}"


@pytest.mark.parametrize("case", REFUSED, ids=[_case_id(case) for case in REFUSED])
def test_a_wrong_argument_is_refused_with_its_name_and_what_is_wrong(case):
    check, args, *rest = case
    kwargs, message = (rest[0], rest[1]) if len(rest) == 2 else ({}, rest[0])
    assert refusal(check, *args, **kwargs) == message


ACCEPTED = [
    (v.require_prompt, ("x" * 1000,), "x" * 1000),
    (v.require_positive_seconds, (2, "poke_interval"), 2.0),
    (v.require_positive_seconds, (0.25, "poke_interval"), 0.25),
    (v.require_text, ("  gen4 ", "model"), "gen4"),
    (v.require_media_uri, (f"  {IMG} ", "image"), IMG),
    (v.require_media_uri, ("HTTPS://CDN.example/a.png", "image"), "HTTPS://CDN.example/a.png"),
    (
        v.require_media_uri,
        ("data:image/png;charset=x;base64,iVBORw0KGgo", "image"),
        "data:image/png;charset=x;base64,iVBORw0KGgo",
    ),
    (v.require_http_url, ("http://hooks.example:8080/x", "callback_url"), "http://hooks.example:8080/x"),
    (v.require_ratio, (" 1280 : 720 ",), "1280:720"),
    (v.require_ratio, ("01280:0720",), "1280:720"),
    (v.require_ratio, ("1:1",), "1:1"),
    (v.require_options, (None,), None),
    (v.require_options, ('{"seconds": 5}',), {"seconds": 5}),
    (v.require_options, ({"seconds": 5},), {"seconds": 5}),
    (v.require_choice, ("video", "character_type", ("image", "video")), "video"),
    (v.require_int, ("8", "duration"), {"allowed": (4, 6, 8)}, 8),
    (v.require_int, (" 10 ", "duration"), {"allowed": range(2, 11)}, 10),
    (v.require_int, (2, "duration"), {"allowed": range(2, 11)}, 2),
    (v.require_seed, (0,), 0),
    (v.require_seed, (4_294_967_295,), 4_294_967_295),
    (v.require_seed, ("42",), 42),
    (v.require_text_only_options, ({"seconds": 1, "motion_vector": STILL},), None),
    (v.require_prompt_image, (PNG_DATA,), PNG_DATA),
    (
        v.require_prompt_image,
        ([{"uri": IMG, "position": "first"}, {"uri": PNG_DATA, "position": "last"}],),
        [{"uri": IMG, "position": "first"}, {"uri": PNG_DATA, "position": "last"}],
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG, "tag": "hero"}, {"uri": IMG, "tag": ""}, {"uri": PNG_DATA, "tag": None}],),
        [{"uri": IMG, "tag": "hero"}, {"uri": IMG}, {"uri": PNG_DATA}],
    ),
    (
        v.require_reference_images,
        ([{"uri": IMG, "tag": "A_23456789012345"}],),
        [{"uri": IMG, "tag": "A_23456789012345"}],
    ),
    # An empty mapping asks for the service's default, said out loud in the body.
    (v.require_content_moderation, ({},), {"publicFigureThreshold": "auto"}),
    (v.require_content_moderation, ({"publicFigureThreshold": "auto"},), {"publicFigureThreshold": "auto"}),
    (v.require_content_moderation, ({"publicFigureThreshold": "low"},), {"publicFigureThreshold": "low"}),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[_case_id(case) for case in ACCEPTED])
def test_a_good_argument_is_passed_on_in_its_normal_form(case):
    check, args, *rest = case
    kwargs, expected = (rest[0], rest[1]) if len(rest) == 2 else ({}, rest[0])
    assert check(*args, **kwargs) == expected


def test_a_long_value_is_shown_by_its_first_sixty_characters_only():
    # 58 characters quoted are 60: shown whole; one more and it is cut, marked with an ellipsis.
    whole = "x" * 58
    assert refusal(v.require_ratio, whole).endswith(f"got '{whole}'")
    assert refusal(v.require_ratio, whole + "y").endswith(f"got '{whole}y…'")
    assert refusal(v.require_ratio, "z" * 5000).endswith("got '" + "z" * 59 + "…'")


def test_a_data_uri_over_the_limit_is_refused_without_echoing_it():
    huge = "data:video/mp4;base64," + "A" * v.MAX_DATA_URI_CHARS
    message = refusal(v.require_media_uri, huge, "video")
    assert message == (
        f"Invalid `video`: is a data: URI of {len(huge):,} characters; the limit is 16,777,216 "
        "(about 12 MB of media): pass an https URL instead"
    )
    at_limit = "data:video/mp4;base64," + "A" * (v.MAX_DATA_URI_CHARS - 22)
    assert v.require_media_uri(at_limit, "video") == at_limit


def test_an_unknown_model_is_sent_as_given_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="runway_provider.validation"):
        assert v.require_model(" gen4_turbo ", "model", v.IMAGE_TO_VIDEO_MODELS) == "gen4_turbo"
        assert caplog.records == []
        assert v.require_model("gen9", "model", ("gen4_aleph", "aleph2")) == "gen9"
    [warning] = caplog.records
    assert "'gen9'" in warning.getMessage() and "gen4_aleph, aleph2" in warning.getMessage()
    assert (
        refusal(v.require_model, "", "model", ("gen4_aleph",))
        == "Invalid `model`: expected a non-blank string, got ''"
    )
