"""Email over the host's SMTP server, only to recipients granted in ``grants.email``."""

from typing import List, Optional, Union

from wit_world.imports import email as _wit

from ._errors import call


def _list(value: Union[str, List[str], None]) -> List[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def send(
    to: Union[str, List[str]],
    subject: str,
    text: str,
    cc: Union[str, List[str], None] = None,
    html: Optional[str] = None,
    reply_to: Optional[str] = None,
) -> str:
    """Send an email; returns its Message-ID (the same on every attempt of the delivery)."""
    message = _wit.Message(
        to=_list(to),
        cc=_list(cc),
        subject=subject,
        text=text,
        html=html,
        reply_to=reply_to,
    )
    return call(_wit.send, message)
