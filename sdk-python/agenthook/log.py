"""Log lines, stored by the host with the attempt (capped) and forwarded to its log."""

from wit_world.imports import log as _wit


def trace(message: str) -> None:
    _wit.write(_wit.Level.TRACE, str(message))


def debug(message: str) -> None:
    _wit.write(_wit.Level.DEBUG, str(message))


def info(message: str) -> None:
    _wit.write(_wit.Level.INFO, str(message))


def warn(message: str) -> None:
    _wit.write(_wit.Level.WARN, str(message))


def error(message: str) -> None:
    _wit.write(_wit.Level.ERROR, str(message))
