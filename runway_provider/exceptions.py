"""Typed errors of the Runway provider.

Every error that concerns one Runway task carries its ``runway_task_id`` so that a failed Airflow
task always names the generation it was about. Messages never contain the API key.
"""

from __future__ import annotations

from runway_provider.compat import AirflowException, AirflowFailException


class RunwayError(AirflowException):
    """Base class of every error raised by this provider.

    :param message: Human-readable description.
    :param runway_task_id: The Runway task the error concerns, if any.
    """

    def __init__(self, message: str, *, runway_task_id: str | None = None) -> None:
        super().__init__(message)
        self.runway_task_id = runway_task_id


class RunwayInputError(AirflowFailException, RunwayError, ValueError):
    """An operator argument is invalid; raised before any request is sent, and never retried.

    Also a :class:`ValueError`, as Python code that checks arguments expects.

    :param field: The argument at fault.
    :param problem: What is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        RunwayError.__init__(self, f"Invalid `{field}`: {problem}")
        self.field = field
        self.problem = problem


class RunwayConfigurationError(AirflowFailException, RunwayError):
    """The Runway connection is unusable (no API key, malformed extra); retrying cannot help."""


class RunwayApiError(RunwayError):
    """CometAPI answered with an error.

    :param message: Description, including the service's own message.
    :param http_status: HTTP status of the answer (None for a transport error).
    :param code: The service's error code, if it sent one (e.g. ``callback_url_empty``).
    :param runway_task_id: The Runway task the request was about, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        runway_task_id: str | None = None,
    ) -> None:
        super().__init__(message, runway_task_id=runway_task_id)
        self.http_status = http_status
        self.code = code


class RunwayRequestRefusedError(RunwayApiError, AirflowFailException):
    """CometAPI refused the request for a reason that will not change by itself: HTTP 4xx other
    than 408, 409 and 429, a redirect, a 500 with ``invalid_request``, or an error code in a
    successful answer. Not retried by Airflow; the request was not processed, so nothing was billed."""


class RunwayAuthenticationError(RunwayRequestRefusedError):
    """CometAPI refused the API key (HTTP 401 or 403)."""


class RunwayBalanceExhaustedError(RunwayRequestRefusedError):
    """The CometAPI account (or this API key's own quota) has no money left for the request:
    CometAPI's ``insufficient_user_quota`` (HTTP 403), Runway's "not enough credits". The request was
    not processed, so nothing was billed; not retried, since every retry would be refused the same
    way until the balance is topped up. The provider's own guard, which refuses before sending when
    the balance is below a floor, is :class:`RunwayBalanceFloorError`."""


class RunwayBalanceFloorError(AirflowFailException, RunwayError):
    """The account's remaining quota, read before a create, is below the connection's floor
    (extra ``min_remaining_quota``): nothing was sent, so nothing was billed. Raised by the provider
    itself, before the service could refuse; the service's own refusal of a spent balance is
    :class:`RunwayBalanceExhaustedError`. Not retried: the balance does not rise by itself.

    :param floor: The connection's ``min_remaining_quota``.
    :param remaining: The remaining quota the quota endpoint gave.
    """

    def __init__(self, message: str, *, floor: float, remaining: float) -> None:
        super().__init__(message)
        self.floor = floor
        self.remaining = remaining


class RunwayBusinessError(RunwayRequestRefusedError):
    """A successful HTTP answer whose body carries an error code (e.g. ``callback_url_empty``)."""


class RunwayTransientError(RunwayApiError):
    """A failure that may go away by itself: connection errors, timeouts, 429, 5xx, garbled bodies.

    Polls are retried on it; a create only where the request certainly did not reach the service.

    :param retry_after: Seconds the service asked the client to wait (``Retry-After``), if given.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class RunwayRateLimitError(RunwayTransientError):
    """CometAPI or Runway refused the request for a limit that lifts by itself: the request rate
    (HTTP 429) or the daily generation limit. Retryable: the request was not processed. A spent
    balance does not lift by itself: :class:`RunwayBalanceExhaustedError`.

    :param limit: Which limit was hit, in words (``rate limit``, ``daily generation limit``).
    """

    def __init__(self, message: str, *, limit: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.limit = limit


class RunwaySubmissionUncertainError(AirflowFailException, RunwayError):
    """A create request may have reached the service but no usable answer came back: the
    generation may exist and be billed. Never re-sent, by the hook or by Airflow (CometAPI has no
    idempotency key); a later try of the same request fails the same way.

    :param message: What happened and what the user can do.
    :param route: The create route, e.g. ``/runway/pro/generate``.
    :param fingerprint: sha256 of the request (route and canonical body), if known.
    """

    def __init__(self, message: str, *, route: str | None = None, fingerprint: str | None = None) -> None:
        RunwayError.__init__(self, message)
        self.route = route
        self.fingerprint = fingerprint


class RunwayStateNotSavedError(AirflowFailException, RunwayError):
    """A generation was created but its id could not be saved for later tries. Not retried: a
    retry would not know the id and would pay again. The message names the Runway task id."""


class RunwayAlreadyGeneratedError(AirflowFailException, RunwayError):
    """This very request was generated and succeeded in an earlier try (its record is kept, marked
    done), but the service no longer gives that task. Not retried and not sent again: the same
    request is never paid twice by a retry or a clear. The message says how to ask for a new take."""


class RunwayTaskError(RunwayError):
    """A Runway task ended without a usable result.

    :param message: Description.
    :param runway_task_id: The Runway task.
    :param status: Its last known normalized status.
    :param failure: The service's failure text, if any.
    :param failure_code: Runway's ``failureCode``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        runway_task_id: str,
        status: str | None = None,
        failure: str | None = None,
        failure_code: str | None = None,
    ) -> None:
        super().__init__(message, runway_task_id=runway_task_id)
        self.status = status
        self.failure = failure
        self.failure_code = failure_code


class RunwayTaskFailedError(RunwayTaskError):
    """The generation failed (or reported success without any output URL)."""


class RunwayContentRejectedError(AirflowFailException, RunwayTaskFailedError):
    """Runway's moderation refused the input or the output (``SAFETY.*``,
    ``INPUT_PREPROCESSING.SAFETY.*``). Not retried: the same content would be refused, and billed,
    again."""

    def __init__(self, message: str, **details: str | None) -> None:
        RunwayTaskFailedError.__init__(self, message, **details)  # type: ignore[arg-type]


class RunwayBadOutputError(RunwayTaskFailedError):
    """Runway could not make a good output (``INTERNAL.BAD_OUTPUT.*``, often text in the image).
    Retried like any failure, though Runway says a retry is not likely to succeed."""


class RunwayInputPreprocessingError(RunwayTaskFailedError):
    """Runway could not prepare the inputs (``INPUT_PREPROCESSING.*`` other than safety)."""


class RunwayTaskCancelledError(RunwayTaskError):
    """The generation was cancelled or deleted on the service side."""


class RunwayTaskLostError(RunwayTaskError):
    """The service kept answering ``task_not_exist`` past the grace period."""


class RunwayTaskTimeoutError(RunwayTaskError):
    """The task did not finish before the deadline. It may still finish, and bill, on the service."""


class RunwayTransferError(RunwayError):
    """A Runway result could not be downloaded or stored; nothing was left at the destination."""
