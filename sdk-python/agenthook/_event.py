"""The event a handler receives."""

import json
from urllib.parse import parse_qsl
from typing import Any, List, Optional, Tuple

from ._errors import Permanent


class Event:
    """One webhook (or plugin-emitted) event, as delivered to this plugin.

    Attributes: ``id`` (the host's id, stable across attempts and replays),
    ``event_id`` (the sender's id), ``source``, ``event_type``, ``received_at_ms``,
    ``attempt`` (1 for the first delivery), ``idempotency_key`` (the same on every
    attempt and replay of this event to this plugin), ``headers`` (kept request
    headers, names lower-cased) and ``body`` (bytes, exactly as verified).
    """

    __slots__ = (
        "id",
        "event_id",
        "source",
        "event_type",
        "received_at_ms",
        "attempt",
        "idempotency_key",
        "headers",
        "body",
    )

    def __init__(
        self,
        id: str,
        event_id: str,
        source: str,
        event_type: str,
        received_at_ms: int,
        attempt: int,
        idempotency_key: str,
        headers: List[Tuple[str, str]],
        body: bytes,
    ) -> None:
        self.id = id
        self.event_id = event_id
        self.source = source
        self.event_type = event_type
        self.received_at_ms = received_at_ms
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.headers = headers
        self.body = body

    @classmethod
    def _from_wit(cls, e) -> "Event":
        return cls(
            e.id,
            e.event_id,
            e.source,
            e.event_type,
            e.received_at_ms,
            e.attempt,
            e.idempotency_key,
            [(k, v) for (k, v) in e.headers],
            bytes(e.body),
        )

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON raises :class:`Permanent`."""
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise Permanent(f"event body is not the expected JSON: {err}") from None

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name``, compared case-insensitively."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def form(self) -> List[Tuple[str, str]]:
        """The body as form fields (``application/x-www-form-urlencoded``, as Twilio and
        Slack commands send), decoded, in order, repeats and empty values kept; a body
        that is not UTF-8 raises :class:`Permanent`."""
        text = self.text()
        if text is None:
            raise Permanent("event body is not a UTF-8 form")
        return parse_qsl(text, keep_blank_values=True)

    def form_field(self, name: str) -> Optional[str]:
        """The first value of form field ``name`` (case-sensitive), if the body has it."""
        try:
            fields = self.form()
        except Permanent:
            return None
        for key, value in fields:
            if key == name:
                return value
        return None

    def text(self) -> Optional[str]:
        """The body as text, when it is valid UTF-8."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def __repr__(self) -> str:
        return f"Event(id={self.id!r}, source={self.source!r}, event_type={self.event_type!r}, attempt={self.attempt})"
