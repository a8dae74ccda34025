"""The plugin's private key-value store (needs ``grants.kv = true``).

Values are bytes; ``str`` values are stored as UTF-8. ``get_versioned``,
``compare_and_swap``, ``increment`` and ``update_json`` are atomic: concurrent
deliveries of the plugin never lose each other's writes through them.
"""

import builtins
import json
from typing import Any, Callable, List, NamedTuple, Optional, Tuple, Union

from wit_world.imports import kv as _wit

from ._errors import Permanent, Retry, call

Value = Union[bytes, bytearray, str]
_PAGE = 1000
_UPDATE_ATTEMPTS = 64


class Versioned(NamedTuple):
    """A value and its version (changes on every write, never repeats for the key)."""

    value: bytes
    version: int


def _bytes(value: Value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def get(key: str) -> Optional[bytes]:
    """The value stored under ``key``, if any."""
    value = call(_wit.get, key)
    return None if value is None else bytes(value)


def set(key: str, value: Value) -> None:  # noqa: A001 - the tool's own name
    """Store ``value`` under ``key``, replacing any previous value."""
    call(_wit.set, key, _bytes(value))


def delete(key: str) -> bool:
    """Remove ``key``; True when it existed."""
    return call(_wit.delete, key)


def get_json(key: str, default: Any = None) -> Any:
    """The value under ``key`` parsed as JSON (``default`` when absent)."""
    value = get(key)
    return default if value is None else _parse(key, value)


def set_json(key: str, value: Any) -> None:
    """Store ``value`` as JSON under ``key``."""
    set(key, json.dumps(value, separators=(",", ":")))


def list_page(prefix: str, start_after: Optional[str] = None, limit: int = _PAGE) -> List[str]:
    """Up to ``limit`` keys starting with ``prefix``, in order, after ``start_after``."""
    return builtins.list(call(_wit.list_keys, prefix, start_after, limit))


def list(prefix: str = "") -> List[str]:  # noqa: A001 - the tool's own name
    """Every key starting with ``prefix``, in order, fetched a page at a time."""
    keys: List[str] = []
    while True:
        page = list_page(prefix, keys[-1] if keys else None)
        if not page:
            return keys
        keys.extend(page)


def get_versioned(key: str) -> Optional[Versioned]:
    """The value under ``key`` with its version, if any."""
    found = call(_wit.get_versioned, key)
    return None if found is None else Versioned(bytes(found.value), found.version)


def compare_and_swap(
    key: str, expected: Optional[int], value: Value
) -> Tuple[bool, Optional[Union[int, Versioned]]]:
    """Write ``value`` only if ``key`` is at version ``expected`` (``None``: absent).

    Returns ``(True, new_version)`` when written, else ``(False, current)`` with the
    key's current :class:`Versioned` (``None`` when it does not exist).
    """
    outcome = call(_wit.compare_and_swap, key, expected, _bytes(value))
    if isinstance(outcome, _wit.SwapOutcome_Swapped):
        return True, outcome.value
    current = outcome.value
    return False, None if current is None else Versioned(bytes(current.value), current.version)


def increment(key: str, delta: int = 1) -> int:
    """Atomically add ``delta`` to the integer under ``key`` (absent: 0); the new value."""
    return call(_wit.increment, key, delta)


def update_json(key: str, update: Callable[[Any], Any]) -> Any:
    """Replace the JSON value under ``key`` with ``update(old)`` (``old`` is None when
    absent), retrying on a concurrent write; returns the value written.

    ``update`` may run more than once, so it must not have effects of its own.
    """
    current = get_versioned(key)
    for _ in range(_UPDATE_ATTEMPTS):
        old = None if current is None else _parse(key, current.value)
        new = update(old)
        expected = None if current is None else current.version
        swapped, result = compare_and_swap(key, expected, json.dumps(new, separators=(",", ":")))
        if swapped:
            return new
        current = result
    raise Retry(f"kv key `{key}` kept changing under {_UPDATE_ATTEMPTS} updates in a row")


def _parse(key: str, value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError as err:
        raise Permanent(f"kv value under `{key}` is not the expected JSON: {err}") from None
