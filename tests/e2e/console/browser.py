"""The web console in a real browser (Debian's chromium, driven by Playwright) against
a running agenthook host. Started by tests/e2e/console.rs, which sets up the host:
source `demo`, plugin `steady` (always done) on every event, plugin `flaky` on
`flaky.*` (dead on its first attempt, done from its second: replay succeeds).

Usage: browser.py ADMIN_URL TOKEN WASM [SCREENSHOT_DIR]
Exits non-zero with a message on the first expectation that fails.
"""

import os
import re
import shutil
import sys

from playwright.sync_api import expect, sync_playwright

ADMIN, TOKEN, WASM = sys.argv[1], sys.argv[2], sys.argv[3]
SHOTS = sys.argv[4] if len(sys.argv) > 4 else None
PAGES = ["/ui", "/ui/events", "/ui/events/1", "/ui/dlq", "/ui/plugins", "/ui/send",
         "/ui/static/console.js"]
# Words only a signed-in page shows (plugin names, the source).
SECRET_WORDS = ["steady", "flaky", "demo"]
expect.set_options(timeout=20_000)


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium is not installed (apt-get install -y chromium)")


def shot(page, name):
    if SHOTS:
        page.set_viewport_size({"width": 1100, "height": 700})
        page.screenshot(path=os.path.join(SHOTS, f"console-{name}.png"))


def refuses_without_session(page, request):
    for path in PAGES:
        page.goto(ADMIN + path)
        assert "/ui/login" in page.url, f"{path} without a session ended at {page.url}"
        body = page.content()
        for word in SECRET_WORDS:
            assert word not in body, f"{path} without a session shows `{word}`"
    for path in ["/ui/send", "/ui/dlq", "/ui/events/1/replay", "/ui/plugins/steady/remove",
                 "/ui/plugins/deploy", "/ui/logout"]:
        r = request.post(ADMIN + path, form={"csrf": "x"}, max_redirects=0)
        assert r.status == 401, f"POST {path} without a session: {r.status}"


def sign_in(page, token):
    page.goto(ADMIN + "/ui/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def send_event(page, event_type, event_id, payload):
    page.goto(ADMIN + "/ui/send")
    page.get_by_label("Source").select_option("demo")
    page.get_by_label("Event type").fill(event_type)
    page.get_by_label("Event id").fill(event_id)
    page.get_by_label("Payload").fill(payload)
    page.get_by_role("button", name="Sign and send").click()
    expect(page.locator("#send-result")).to_contain_text("Ingress answered 200")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        context = browser.new_context()
        page = context.new_page()

        # 1. Nothing without a session.
        refuses_without_session(page, context.request)

        # 2. A wrong token is refused in place; the right one opens the overview.
        sign_in(page, "not-the-token")
        expect(page.get_by_role("alert")).to_contain_text("not the admin token")
        assert not context.cookies(), "a refused sign-in set a cookie"
        sign_in(page, TOKEN)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        cookie = next(c for c in context.cookies() if c["name"] == "agenthook_session")
        assert cookie["httpOnly"], cookie
        assert cookie["sameSite"] == "Strict", cookie
        # HttpOnly: scripts cannot read it.
        assert "agenthook_session" not in page.evaluate("document.cookie")

        # 3. Live tail: an event sent from another tab appears and turns done.
        events = context.new_page()
        events.goto(ADMIN + "/ui/events?tail=1")
        expect(events.get_by_label("Live tail")).to_be_checked()
        sender = context.new_page()
        send_event(sender, "order.created", "ui-order-1",
                   '{"type": "order.created", "data": {"order": 42}}')
        row = events.locator("#events-live tr", has_text="ui-order-1")
        expect(row).to_be_visible()
        expect(row.locator("td").nth(5)).to_have_text("done")
        shot(events, "events")

        # 4. Open it: pretty payload, headers, the delivery and its attempt.
        row.get_by_role("link").first.click()
        expect(events.get_by_role("heading", name=re.compile(r"^Event \d+$"))).to_be_visible()
        expect(events.get_by_label("Payload", exact=True)).to_contain_text('"order": 42')
        expect(events.locator("section.card", has_text="steady")).to_contain_text("done")
        expect(events.get_by_role("cell", name="webhook-signature")).to_have_count(0)
        expect(events.get_by_role("cell", name="content-type")).to_be_visible()
        shot(events, "event")

        # 5. A dead letter, replayed from the dead-letter page, succeeds.
        send_event(sender, "flaky.fail", "ui-flaky-1", '{"type": "flaky.fail"}')
        shot(sender, "send")
        dlq = context.new_page()
        dlq.goto(ADMIN + "/ui/dlq")
        for _ in range(100):
            if dlq.locator("tr", has_text="flaky").count() > 0:
                break
            dlq.wait_for_timeout(200)
            dlq.reload()
        flaky_row = dlq.locator("tbody tr", has_text="flaky")
        expect(flaky_row).to_have_count(1)
        expect(flaky_row).to_contain_text("permanent failure requested on attempt 1")
        shot(dlq, "dlq")
        flaky_row.get_by_role("checkbox").check()
        dlq.get_by_role("button", name="Replay selected").click()
        expect(dlq.get_by_role("heading", name="Replay dead letters?")).to_be_visible()
        dlq.get_by_role("button", name="Yes, replay 1").click()
        expect(dlq.get_by_role("status")).to_contain_text("Replayed 1.")
        # The event page refreshes itself until the replayed delivery is done.
        dlq.goto(ADMIN + "/ui/events?event_id=ui-flaky-1")
        dlq.locator("#events-live tbody tr").first.get_by_role("link").first.click()
        flaky_card = dlq.locator("section.card", has_text="flaky")
        expect(flaky_card.locator("h3")).to_contain_text("done")
        expect(flaky_card.locator("tbody tr")).to_have_count(2)

        # 6. Plugins: a refused deploy shows its reason in place; a good one is added.
        plugins = context.new_page()
        plugins.goto(ADMIN + "/ui/plugins")
        plugins.get_by_label("Name").fill("second")
        plugins.get_by_label("Component (.wasm)").set_input_files(WASM)
        plugins.get_by_label("…or the manifest text").fill(
            '[[subscribe]]\nsource = "demo"\n\n[grants]\nteleport = true\n')
        plugins.get_by_role("button", name="Deploy", exact=True).click()
        expect(plugins.locator("#deploy-error")).to_contain_text("teleport")
        expect(plugins.locator("#deploy-error")).to_be_focused()
        expect(plugins.get_by_label("Name")).to_have_value("second")
        shot(plugins, "plugins-refused")
        plugins.get_by_label("Component (.wasm)").set_input_files(WASM)
        plugins.get_by_label("…or the manifest text").fill(
            '[[subscribe]]\nsource = "demo"\ntypes = ["never.*"]\n')
        plugins.get_by_role("button", name="Deploy", exact=True).click()
        expect(plugins.get_by_role("status")).to_contain_text("Deployed second (added)")
        expect(plugins.locator("#plugin-second")).to_be_visible()
        plugins.get_by_role("button", name="Remove second…").click()
        plugins.get_by_role("button", name="Yes, remove second").click()
        expect(plugins.get_by_role("status")).to_contain_text("Removed second")
        expect(plugins.locator("#plugin-second")).to_have_count(0)

        # 7. The overview shows both plugins and the source, and keyboard users can
        # reach the navigation from the skip link.
        page.goto(ADMIN + "/ui")
        expect(page.locator("#overview")).to_contain_text("steady")
        expect(page.locator("#overview")).to_contain_text("flaky")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        if SHOTS:
            page.wait_for_timeout(4500)  # a few chart samples for the picture
            page.reload()
            shot(page, "overview")

        # 8. Signing out ends the session everywhere.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("Admin token")).to_be_visible()
        refuses_without_session(page, context.request)
        browser.close()
    print("console browser test: ok")


if __name__ == "__main__":
    main()
