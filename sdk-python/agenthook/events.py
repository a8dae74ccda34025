"""Emit new events to the plugins subscribed to ``plugin:NAME`` (needs ``grants.emit``)."""

import json
from typing import Any, Optional

from wit_world.imports import events as _wit

from ._errors import call


def emit(event_type: str, body: Any, key: Optional[str] = None) -> str:
    """Store a new event of ``event_type`` with ``body`` (as JSON) and return its id.

    ``key`` names this emit within the delivery: a retried attempt that emits the same
    key gets the first event's id back instead of a second event.
    """
    return call(_wit.emit, event_type, json.dumps(body, separators=(",", ":")), key)
