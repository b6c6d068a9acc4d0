"""What of a URL may be kept or shown: its scheme, host, port and path, never its query.

Signed URLs (S3's ``X-Amz-Signature``, CDN tokens) carry their signature in the query, and a user
name or password may sit in the authority: neither belongs in a log line, an XCom, a stored record
or a lineage event. Records, logs and lineage all cut URLs here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def public_parts(url: Any) -> tuple[str, str] | None:
    """``scheme://host[:port]`` and the path of an http(s) URL; None for anything else.

    The query, the fragment and any user name or password are dropped; the host is lower-cased and
    a default port left out. ``data:`` URIs, text with white space in it (a prompt that starts
    like a URL), and anything else that is not an http(s) URL with a host, give None.
    """
    if not isinstance(url, str) or any(char.isspace() for char in url.strip()):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{scheme}://{authority(parts.hostname, port, scheme)}", parts.path or "/"


def public_url(url: str) -> str:
    """An http(s) URL without its query, fragment and credentials; anything else as it is."""
    parts = public_parts(url)
    return url if parts is None else "".join(parts)


def authority(host: str, port: int | None, scheme: str) -> str:
    """``host[:port]``, lower-cased, IPv6 in brackets, the scheme's default port left out."""
    host = host.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
