"""Outbound HTTP, only to the origins the manifest grants in ``grants.http``.

    customer = http.get(f"{base}/v1/customers/{cid}").header("accept", "application/json")\\
        .send().raise_for_status().json()
"""

import json as _json
from typing import Any, List, Optional, Tuple

from wit_world.imports import http as _wit

from ._errors import Permanent, Retry, call


class Response:
    """The final response, after any redirects."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name``, compared case-insensitively."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; a body that does not parse raises :class:`Permanent`."""
        try:
            return _json.loads(self.body)
        except ValueError as err:
            raise Permanent(f"response body is not the expected JSON: {err}") from None

    def raise_for_status(self) -> "Response":
        """``self`` for 1xx-3xx; :class:`Retry` for 408, 425, 429 and 5xx (honouring
        ``Retry-After`` seconds); :class:`Permanent` for other 4xx."""
        if self.status < 400:
            return self
        reason = f"HTTP {self.status}: {self.text()[:200]}"
        if self.status in (408, 425, 429) or self.status >= 500:
            after = (self.header("retry-after") or "").strip()
            raise Retry(reason, int(after) * 1000 if after.isdigit() else None)
        raise Permanent(reason)

    def __repr__(self) -> str:
        return f"Response(status={self.status})"


class Request:
    """An outgoing request; build it with :func:`get`, :func:`post`, … and ``send()``."""

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self.headers: List[Tuple[str, str]] = []
        self.body: Optional[bytes] = None
        self.timeout_ms: Optional[int] = None

    def header(self, name: str, value: str) -> "Request":
        self.headers.append((name, value))
        return self

    def data(self, body) -> "Request":
        """Set the body (bytes, or text sent as UTF-8)."""
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return self

    def json(self, value: Any) -> "Request":
        """Set a JSON body and ``content-type: application/json``."""
        self.body = _json.dumps(value, separators=(",", ":")).encode("utf-8")
        return self.header("content-type", "application/json")

    def timeout(self, seconds: float) -> "Request":
        """Give up after ``seconds`` (the plugin's own deadline always applies)."""
        self.timeout_ms = max(1, int(seconds * 1000))
        return self

    def send(self) -> Response:
        """Send it. Any HTTP status is a response; see :meth:`Response.raise_for_status`."""
        request = _wit.Request(
            method=self.method,
            url=self.url,
            headers=self.headers,
            body=self.body,
            timeout_ms=self.timeout_ms,
        )
        r = call(_wit.fetch, request)
        return Response(r.status, [(k, v) for (k, v) in r.headers], bytes(r.body))


def request(method: str, url: str) -> Request:
    return Request(method.upper(), url)


def get(url: str) -> Request:
    return Request("GET", url)


def post(url: str) -> Request:
    return Request("POST", url)


def put(url: str) -> Request:
    return Request("PUT", url)


def patch(url: str) -> Request:
    return Request("PATCH", url)


def delete(url: str) -> Request:
    return Request("DELETE", url)
