"""Check a transfer's destination before anything is paid for or downloaded.

Twice: when the DAG is parsed, for a destination that is not templated (its form, and whether the
filesystem of its scheme is installed: looked up, not imported, so parsing stays cheap), and when
the transfer starts, before any download (the same checks for a rendered template, plus one cheap
call to an object store, which is what finds missing packages and credentials).

The form rule: a folder ends in ``/``; anything else names a file and has an extension. A path
such as ``/data/videos`` is refused either way, even when that folder exists: the same DAG must
mean the same thing on the first run (no folder yet, where it would write a file named like the
folder) as on later runs (where it would fail on the folder).
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runway_provider.exceptions import RunwayInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

FIELD = "destination"
_LOCAL_SCHEMES = ("", "file", "local")
_AMAZON = ("airflow.providers.amazon", "apache-airflow-providers-amazon", "s3fs")
_GOOGLE = ("airflow.providers.google", "apache-airflow-providers-google", "gcsfs")
_AZURE = ("airflow.providers.microsoft.azure", "apache-airflow-providers-microsoft-azure", "adlfs")
# Airflow reaches these object stores through the provider that registers the scheme with its
# connection type, and fsspec's backend: both must be installed where the task runs.
_PROVIDERS = {
    "s3": _AMAZON,
    "s3a": _AMAZON,
    "gs": _GOOGLE,
    "gcs": _GOOGLE,
    "abfs": _AZURE,
    "abfss": _AZURE,
    "az": _AZURE,
    "adl": _AZURE,
}
# Exceptions of missing credentials in the object stores' SDKs, matched by name: importing the SDKs
# to compare classes would cost every transfer that does not use them.
_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "ClientAuthenticationError"}
)


def is_templated(value: Any) -> bool:
    """Whether ``value`` is a Jinja template, which only the task can check once rendered."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_form(text: str, *, folder: bool | None) -> None:
    """Refuse a destination string that cannot be stored to as meant; imports no filesystem.

    :param text: The destination, a path or URI.
    :param folder: The operator's ``destination_folder``: None to follow the trailing-``/`` rule.
    """
    scheme = _scheme(text)
    _check_installed(text, scheme)
    if folder is not None or text.endswith("/"):
        return
    path = urlsplit(text).path if "://" in text else text
    if scheme in _LOCAL_SCHEMES and os.path.isdir(path):
        raise RunwayInputError(
            FIELD,
            f"{text} is an existing folder: add a trailing / ({text}/) to store into it, each result named "
            "after its Runway task.",
        )
    if not posixpath.splitext(posixpath.basename(path))[1]:
        raise RunwayInputError(
            FIELD,
            f"{text} has no trailing / and no extension. A folder? Add a trailing / ({text}/). A file? Add "
            f"an extension such as .mp4 ({text}.mp4).",
        )


def check_reachable(target: ObjectStoragePath, text: str) -> None:
    """Make one cheap call to an object store (does the destination exist?), so that a missing
    package or missing credentials stop the task before the download, with what to install or
    configure. Whether it exists does not matter here.

    :param target: The destination.
    :param text: The destination as given, for the message.
    """
    scheme = _scheme(text)
    if scheme in _LOCAL_SCHEMES:
        return
    try:
        target.exists()
    except Exception as err:
        cause = _missing_package_or_credentials(err)
        if cause is None:
            raise
        raise RunwayInputError(FIELD, f"{text} cannot be reached ({cause}). {_fix(scheme)}") from None


def _scheme(text: str) -> str:
    return text.split("://", 1)[0].lower() if "://" in text else ""


def _check_installed(text: str, scheme: str) -> None:
    if scheme in _LOCAL_SCHEMES:
        return
    from fsspec.registry import known_implementations, registry

    provider = _PROVIDERS.get(scheme)
    if provider is not None:
        modules = [provider[0], provider[2]]
    elif scheme in registry:
        return
    elif scheme in known_implementations:
        modules = [known_implementations[scheme]["class"].split(".", 1)[0]]
    else:
        raise RunwayInputError(
            FIELD,
            f"{text}: no filesystem is known for {scheme}://. Use a local path, file://, s3://, gs://...",
        )
    missing = [module for module in modules if not _importable(module)]
    if missing:
        raise RunwayInputError(
            FIELD, f"{text} needs {', '.join(missing)}, which is not installed. {_fix(scheme)}"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _fix(scheme: str) -> str:
    provider = _PROVIDERS.get(scheme)
    install = f"pip install {provider[1]} {provider[2]}" if provider else f"install fsspec's {scheme} backend"
    return (
        f"On every worker: {install}; give the store's connection in the URI, "
        f"{scheme}://<conn_id>@<bucket>/<prefix>/, or as destination_conn_id, with credentials in it."
    )


def _missing_package_or_credentials(err: BaseException) -> str | None:
    """The first missing module, missing credentials or refused access in ``err``'s chain, described;
    None if none."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ImportError):
            return f"missing package: {current.name or current}"
        if type(current).__name__ in _CREDENTIAL_ERRORS:
            return f"no credentials: {type(current).__name__}"
        if isinstance(current, PermissionError):
            # What a store answers a connection without credentials, which Airflow's S3 filesystem
            # then uses anonymously.
            return "access denied: are the connection's credentials missing or wrong?"
        current = current.__cause__ or current.__context__
    return None
