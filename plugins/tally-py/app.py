"""`tally-py` — the `tally` example in Python.

For every `payment.succeeded` event it adds the amount to a running total per customer,
kept in kv under `tally/{customer}`, and decides whether the customer just crossed the
VIP threshold (config `vip_threshold`, in minor units). Retries and replays of the same
delivery are counted once (the idempotency key is recorded under `seen/{key}`), and the
total is updated with a compare-and-swap loop, so concurrent payments of one customer
never lose an update.
"""

import agenthook
from agenthook import config, kv, log

DEFAULT_VIP_THRESHOLD = 100_000  # 1000.00 in minor units


@agenthook.handler
def handle(event: agenthook.Event) -> None:
    if event.event_type != "payment.succeeded":
        log.info(f"ignoring {event.event_type} event {event.event_id}")
        return

    seen_key = f"seen/{event.idempotency_key}"
    if kv.get(seen_key) is not None:
        log.info(f"event {event.event_id} already counted")
        return

    data = event.json()["data"]
    customer, amount, currency = data["customer"], int(data["amount"]), data["currency"]
    threshold = config.get_int("vip_threshold", DEFAULT_VIP_THRESHOLD)

    before = {}

    def add(stored):
        tally = stored or {"total": 0, "count": 0, "currency": currency}
        if tally["currency"] != currency:
            raise agenthook.Permanent(
                f"customer {customer} is tallied in {tally['currency']}, "
                f"payment {event.event_id} is in {currency}"
            )
        before["total"] = tally["total"]
        return {"total": tally["total"] + amount, "count": tally["count"] + 1, "currency": currency}

    after = kv.update_json(f"tally/{customer}", add)
    # As in the Rust tally: a crash between these writes counts the payment again on
    # retry; writing `seen` first would lose it instead.
    kv.set(seen_key, event.event_id)

    if before["total"] >= threshold:
        decision = "already above vip threshold"
    elif after["total"] >= threshold:
        decision = "crossed vip threshold: flag for account manager"
    else:
        decision = "below vip threshold"
    log.info(f"customer {customer} total {after['total']} {currency}: {decision}")
