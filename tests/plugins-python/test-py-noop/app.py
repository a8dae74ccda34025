"""TEST-ONLY plugin: does nothing (the benchmarks' Python no-op, beside test-noop)."""

import agenthook


@agenthook.handler
def handle(event: agenthook.Event) -> None:
    pass
