"""Handler errors (what the host does with a failed delivery) and tool errors."""

from typing import Optional

from componentize_py_types import Err
from wit_world.imports import types


class HandlerError(Exception):
    """Why a handler did not complete; raise :class:`Retry` or :class:`Permanent`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(HandlerError):
    """A transient failure: the host retries with backoff, then dead-letters.

    ``delay_ms`` asks for a delay before the next attempt (kept within the manifest's
    backoff bounds).
    """

    def __init__(self, reason: str, delay_ms: Optional[int] = None) -> None:
        super().__init__(reason)
        self.delay_ms = delay_ms


class Permanent(HandlerError):
    """The event can never be handled: the host dead-letters it at once."""


class ToolError(Exception):
    """A host tool refused or failed a call; ``message`` is the host's text."""

    kind = "failed"
    #: Whether a handler that lets this escape is retried (True) or dead-lettered.
    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.kind}: {message}")
        self.message = message

    def to_handler_error(self) -> HandlerError:
        return Retry(str(self)) if self.retryable else Permanent(str(self))


class Denied(ToolError):
    """The manifest does not grant this; the message names the missing grant."""

    kind = "denied"
    retryable = False


class Invalid(ToolError):
    """The arguments are invalid (too large, malformed)."""

    kind = "invalid"
    retryable = False


class Limited(ToolError):
    """A per-plugin limit was reached (rate, size, count)."""

    kind = "limited"


class Failed(ToolError):
    """The host could not complete the call; retrying later may succeed."""

    kind = "failed"


_KINDS = {
    types.ToolError_Denied: Denied,
    types.ToolError_Invalid: Invalid,
    types.ToolError_Limited: Limited,
    types.ToolError_Failed: Failed,
}


def call(function, *args):
    """Call a host import, turning its WIT ``tool-error`` into a :class:`ToolError`."""
    try:
        return function(*args)
    except Err as err:
        kind = _KINDS.get(type(err.value), Failed)
        raise kind(str(err.value.value)) from None


def to_wit(error: HandlerError):
    """The WIT ``handler-error`` for a handler error."""
    if isinstance(error, Retry):
        return types.HandlerError_Retry(
            types.RetryRequest(reason=error.reason, delay_ms=error.delay_ms)
        )
    return types.HandlerError_Permanent(error.reason)
