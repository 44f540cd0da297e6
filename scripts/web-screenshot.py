#!/usr/bin/env python3
"""Makes docs/screenshot.png: Alice (laptop) and Bob (phone) chatting in the web app, on a throwaway
embedded MongoDB and a debug chat-server. Run from the repository: .venv/bin/python scripts/web-screenshot.py"""
import base64
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Mongo, Server  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402
from test_browser import Person  # noqa: E402
from test_web import dev_env  # noqa: E402

OUT = ROOT / "docs" / "screenshot.png"


def main():
    mongo = Mongo()
    server = Server(mongo.uri, env=dev_env(pathlib.Path(tempfile.mkdtemp())))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            alice = Person(browser, server, "alice", viewport={"width": 860, "height": 600})
            bob = Person(browser, server, "bob", viewport={"width": 340, "height": 600})
            carol = Person(browser, server, "carol")
            carol.open_direct("alice")
            carol.send("Are the release notes ready?")
            carol.close()
            alice.open_direct("bob")
            lines = [(alice, "Hi Bob! Lunch at 12:30?"), (bob, "Sounds good. The usual place?"),
                     (alice, "Yes, I booked a table by the window"), (bob, "Perfect, see you there!")]
            bob.conversation("Alice").click()
            for person, text in lines:
                person.send(text)
                expect(alice.message(text)).to_be_visible(timeout=30_000)
                expect(bob.message(text)).to_be_visible(timeout=30_000)
            alice.page.wait_for_timeout(3500)   # typing signals are throttled to one per 3 s
            alice.page.get_by_test_id("composer").press_sequentially("Great", delay=20)
            expect(bob.page.get_by_test_id("typing")).to_have_text("Alice is typing…", timeout=30_000)
            expect(alice.message(lines[-2][1]).get_by_test_id("seen-by")).to_be_visible(timeout=30_000)
            shots = [base64.b64encode(x.page.screenshot()).decode() for x in (alice, bob)]
            # The two windows side by side, composed by the browser itself.
            board = browser.new_page(viewport={"width": 1260, "height": 640})
            board.set_content(f"""<body style="margin:0;background:#e7e9f2;display:flex;gap:20px;padding:20px;align-items:flex-start">
                <img style="border-radius:10px;box-shadow:0 6px 24px rgba(0,0,0,.18)" src="data:image/png;base64,{shots[0]}">
                <img style="border-radius:18px;box-shadow:0 6px 24px rgba(0,0,0,.18)" src="data:image/png;base64,{shots[1]}"></body>""")
            board.screenshot(path=str(OUT))
            browser.close()
    finally:
        server.stop()
        mongo.remove()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
