"""Write agenthook plugins in Python: one decorated handler, typed access to the host's tools.

A plugin is a WebAssembly component the agenthook host calls once per event delivery.
Build it with ``agenthook plugin build DIR`` (which runs componentize-py against the
``agenthook:plugin`` WIT); the handler module is ``app.py``::

    import agenthook
    from agenthook import kv, log

    @agenthook.handler
    def handle(event: agenthook.Event) -> None:
        payment = event.json()
        total = kv.increment(f"total/{payment['customer']}", payment["amount"])
        log.info(f"customer {payment['customer']} total {total}")

Raise :class:`Retry` to have the host try the delivery again later (with backoff, up to
the manifest's ``retry.max_attempts``) and :class:`Permanent` to dead-letter it at once.
A tool call that fails raises a :class:`ToolError`: ``Denied`` and ``Invalid`` end the
delivery permanently, ``Limited`` and ``Failed`` are retried, unless the handler catches
them. Any other exception is retried too, with its traceback in the attempt's logs.
"""

from . import config, email, events, http, kv, llm, log
from ._errors import (
    Denied,
    Failed,
    HandlerError,
    Invalid,
    Limited,
    Permanent,
    Retry,
    ToolError,
)
from ._event import Event
from ._handler import handler

__all__ = [
    "Denied",
    "Event",
    "Failed",
    "HandlerError",
    "Invalid",
    "Limited",
    "Permanent",
    "Retry",
    "ToolError",
    "config",
    "email",
    "events",
    "handler",
    "http",
    "kv",
    "llm",
    "log",
]
