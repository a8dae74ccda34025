"""The values of the manifest's ``[config]`` table (secrets resolved by the host)."""

from typing import Optional

from wit_world.imports import config as _wit

from ._errors import Permanent


def get(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value for ``key``, or ``default`` when the manifest does not set it."""
    value = _wit.get(key)
    return default if value is None else value


def require(key: str) -> str:
    """The value for ``key``; a missing one raises :class:`Permanent` naming it."""
    value = _wit.get(key)
    if value is None:
        raise Permanent(f"config `{key}` is not set in the plugin's manifest ([config])")
    return value


def get_int(key: str, default: Optional[int] = None) -> Optional[int]:
    """The value for ``key`` as an integer; one that is not raises :class:`Permanent`."""
    value = _wit.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise Permanent(f"config `{key}` = {value!r} is not an integer") from None
