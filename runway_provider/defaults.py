"""Every default the provider's users meet, in one place, each named for what it bounds.

Light on purpose: DAG files read these when they are parsed (operator signatures), so this module
imports nothing.
"""

from __future__ import annotations

# The connection every hook, operator and sensor uses unless told otherwise.
DEFAULT_CONN_ID = "runway_default"
DEFAULT_BASE_URL = "https://api.cometapi.com"
DEFAULT_RUNWAY_VERSION = "2024-11-06"
# Seconds to wait for the answer to one HTTP request (the connection's extra ``timeout``).
DEFAULT_REQUEST_TIMEOUT = 60.0

# Seconds one wait lasts at most (``timeout`` of a wait), from submission or from its first check.
DEFAULT_WAIT_TIMEOUT = 3600.0
# Seconds after submission during which CometAPI's ``task_not_exist`` means "not visible yet".
DEFAULT_NOT_FOUND_GRACE = 180.0
# CometAPI's documented balance query; it answers per key and per account (docs/connection.md).
DEFAULT_QUOTA_URL = "https://query.cometapi.com/user/quota"
