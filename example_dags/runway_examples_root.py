"""Where the examples may read and write: under one root the deployment sets.

Run conf chooses some examples' ``destination`` (where videos are written) and ``sheet`` (the prompt
sheet read). Unbounded, whoever may trigger a run could make the worker write through any
connection or anywhere on its disk, or read any file it can open. The examples refuse run conf
outside the root, naming the conf key, before anything is generated.

``RUNWAY_EXAMPLES_ROOT``: a URI or path, e.g. ``s3://aws_default@my-bucket/runway/`` or
``file:///srv/runway/``. Unset, it is ``RUNWAY_VIDEOS_URI`` (the examples' default destination),
else ``file:///tmp/runway-videos/``. Copy this file beside an example you copy.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from runway_provider.compat import AirflowFailException

ROOT = os.environ.get("RUNWAY_EXAMPLES_ROOT") or os.environ.get(
    "RUNWAY_VIDEOS_URI", "file:///tmp/runway-videos/"
)
# Where the videos go by default: any Airflow object storage URI under the root.
DESTINATION = os.environ.get("RUNWAY_VIDEOS_URI", ROOT)


class OutsideExamplesRootError(AirflowFailException):
    """A run conf value lies outside ``RUNWAY_EXAMPLES_ROOT``; retrying cannot help.

    :param conf_key: The run conf key at fault.
    :param value: Its value.
    """

    def __init__(self, conf_key: str, value: str) -> None:
        super().__init__(
            f"Run conf `{conf_key}` ({value!r:.200}) is outside RUNWAY_EXAMPLES_ROOT ({ROOT}): give a "
            "place under it, or have the deployment set RUNWAY_EXAMPLES_ROOT."
        )
        self.conf_key = conf_key


def under_root(conf_key: str, value: str) -> str:
    """``value`` when it lies under the root; else :class:`OutsideExamplesRootError`.

    The same scheme and connection (``conn_id@bucket``) as the root, a path inside the root's, no
    ``..`` (percent-encoded or not), no query or fragment. A path without a scheme is a local file.

    :param conf_key: The run conf key, named in the error.
    :param value: The URI or path the run conf gave.
    """
    root, target = urlsplit(ROOT), urlsplit(value)
    root_path, path = root.path.rstrip("/") + "/", target.path.rstrip("/") + "/"
    inside = (
        _scheme(target.scheme) == _scheme(root.scheme)
        and target.netloc == root.netloc
        and not (target.query or target.fragment)
        and ".." not in unquote(target.path).split("/")
        and path.startswith(root_path)
    )
    if not inside:
        raise OutsideExamplesRootError(conf_key, value)
    return value


def _scheme(scheme: str) -> str:
    # A bare path, file:// and fsspec's local:// all name the worker's disk.
    return "file" if scheme in ("", "file", "local") else scheme
