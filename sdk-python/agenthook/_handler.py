"""The handler registry and the glue the component's ``handle`` export calls."""

import traceback

from componentize_py_types import Err

from . import log
from ._errors import HandlerError, Retry, ToolError, to_wit
from ._event import Event

_handler = None


def handler(function):
    """Register ``function(event)`` as this plugin's handler (exactly one per plugin)."""
    global _handler
    if _handler is not None and _handler is not function:
        raise RuntimeError(
            f"a plugin has one handler: {_handler.__name__} is already registered"
        )
    _handler = function
    return function


def run(wit_event) -> None:
    """Run the registered handler on one event delivered through the ABI."""
    if _handler is None:
        raise Err(to_wit(Retry("no handler registered: decorate one function with @agenthook.handler")))
    try:
        _handler(Event._from_wit(wit_event))
    except HandlerError as err:
        raise Err(to_wit(err)) from None
    except ToolError as err:
        raise Err(to_wit(err.to_handler_error())) from None
    except Exception as err:  # noqa: BLE001 - every other failure is retried, visibly
        log.error("handler raised:\n" + traceback.format_exc())
        raise Err(to_wit(Retry(f"handler raised {type(err).__name__}: {err}"))) from None
