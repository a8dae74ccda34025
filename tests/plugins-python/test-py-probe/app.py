"""TEST-ONLY plugin: calls the tools as the event body says and records each result.

A form-encoded event from the source `sms` (Twilio) instead has its decoded fields
stored under form/{event_id}.

Body: {"ops": [[op, args...], ...], "then": "retry" | "permanent" | "raise" | "loop" |
"memory" | "recursion" | null}. Each op's result ("ok ..." or the tool error's text) is
stored, in order, as a JSON array under result/{event_id}/{attempt} in kv, then `then`
decides how the handler ends.
"""

import agenthook
from agenthook import config, email, events, http, kv, llm, log


def run_op(op, args):
    if op == "kv_set":
        kv.set(args[0], args[1])
        return "set"
    if op == "kv_get":
        value = kv.get(args[0])
        return "none" if value is None else value.decode()
    if op == "kv_delete":
        return str(kv.delete(args[0]))
    if op == "kv_list":
        return ",".join(kv.list(args[0]))
    if op == "incr":
        return str(kv.increment(args[0], args[1]))
    if op == "cas":
        # [key, expected version or null, value]
        swapped, result = kv.compare_and_swap(args[0], args[1], args[2])
        return f"swapped {result}" if swapped else f"conflict {result}"
    if op == "versioned":
        found = kv.get_versioned(args[0])
        return "none" if found is None else f"{found.value.decode()}@{found.version}"
    if op == "update_json":
        return str(kv.update_json(args[0], lambda old: (old or 0) + args[1]))
    if op == "config":
        return str(config.get(args[0]))
    if op == "fetch":
        r = http.get(args[0]).header("x-probe", "1").send()
        return f"{r.status} {r.text()}"
    if op == "post_json":
        r = http.post(args[0]).json(args[1]).send().raise_for_status()
        return f"{r.status} {r.json()}"
    if op == "email":
        return email.send(to=args[0], subject="probe", text="probe body")
    if op == "emit":
        return events.emit(args[0], args[1], key=args[2] if len(args) > 2 else None)
    if op == "llm":
        answer = llm.chat(
            args[0],
            [llm.system("Answer in one line."), llm.user(args[1])],
            max_tokens=64,
        )
        return f"{answer.content} {answer.input_tokens}/{answer.output_tokens} {answer.finish_reason}"
    raise ValueError(f"unknown op {op}")


@agenthook.handler
def handle(event: agenthook.Event) -> None:
    if event.source == "sms":
        # A form (Twilio's source in tests/e2e/standards.rs): record the fields as the
        # SDK decodes them.
        kv.set_json(f"form/{event.event_id}", {"fields": event.form(), "body": event.form_field("Body")})
        return
    plan = event.json()
    results = []
    for op, *args in plan.get("ops", []):
        try:
            results.append(f"ok {run_op(op, args)}")
        except agenthook.ToolError as err:
            results.append(str(err))
        log.info(f"test-py-probe: {results[-1]}")
    if plan.get("record", True):
        kv.set_json(f"result/{event.event_id}/{event.attempt}", results)

    then = plan.get("then")
    if then == "retry":
        raise agenthook.Retry("asked to retry", delay_ms=1)
    if then == "permanent":
        raise agenthook.Permanent("asked to fail for good")
    if then == "raise":
        raise KeyError("no such thing")
    if then == "loop":
        while True:
            pass
    if then == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(8 << 20))
    if then == "recursion":
        def deeper(n):
            return deeper(n + 1) + 1

        deeper(0)
