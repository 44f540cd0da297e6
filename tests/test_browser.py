"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright for Python
(its own browser downloads are never used). Two browser contexts are two people on one server,
signed in through the development route. Every step leaves a screenshot in test-artifacts/browser/.

Why Playwright rather than Selenium: its expect() assertions wait for the page to reach a state
(no sleeps, no polling loops in the tests), one process drives several isolated contexts, and it
needs no chromedriver."""
import os
import pathlib
import shutil
import time

import pytest

from conftest import ROOT, Server, free_port
from test_web import dev_env

from playwright.sync_api import expect, sync_playwright  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
ARTIFACTS = pathlib.Path(os.environ.get("CHAT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT = 30_000   # ms: the longest a step may take on a loaded machine (expect() polls, it does not sleep)


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (make deps does)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


_people = []


@pytest.fixture(autouse=True)
def shots_of_a_failure(request):
    # A failed step leaves what each open page showed at that moment.
    _people.clear()
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for person in _people:
            try:
                person.page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name[:60]}-{person.name}.png"))
            except Exception:
                pass   # that page was closed already


class Person:
    """One person in a browser context of their own (own storage, own sockets)."""

    def __init__(self, browser, server, name, viewport=LAPTOP, shoot_sign_in=False):
        self.name = name
        self.context = browser.new_context(viewport=viewport, device_scale_factor=1)
        self.page = self.context.new_page()
        _people.append(self)
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.goto(server.base + "/")
        if shoot_sign_in:
            expect(self.page.get_by_label("Sign in as")).to_be_visible(timeout=WAIT)
            self.page.screenshot(path=str(ARTIFACTS / "00-sign-in.png"))
        self.page.get_by_label("Sign in as").fill(name)
        self.page.get_by_role("button", name="Continue").click()
        expect(self.page.locator("#app")).to_be_visible(timeout=WAIT)
        expect(self.page.get_by_test_id("banner")).to_be_hidden(timeout=WAIT)

    def shot(self, step):
        path = ARTIFACTS / f"{step}-{self.name}.png"
        self.page.screenshot(path=str(path))
        return path

    def conversation(self, title):
        return self.page.get_by_test_id("conversation").filter(has=self.page.locator(".conv-name").get_by_text(title, exact=True))

    def open_direct(self, other):
        self.page.get_by_test_id("new-direct").click()
        self.page.get_by_placeholder("Search people").fill(other)
        self.page.get_by_test_id("person").filter(has_text=other.capitalize()).first.click()
        expect(self.page.get_by_test_id("chat-name")).to_have_text(other.capitalize(), timeout=WAIT)

    def send(self, text):
        self.page.get_by_test_id("composer").fill(text)
        self.page.get_by_test_id("composer").press("Enter")

    def message(self, text):
        return self.page.get_by_test_id("message").filter(has=self.page.get_by_test_id("message-text").get_by_text(text, exact=True))

    def close(self):
        self.context.close()


def console_clean(*people, outage=False):
    # While the server is down (outage) Chromium logs the failed sockets and token requests; nothing
    # else is expected.
    for p in people:
        unexpected = [e for e in p.errors if not (outage and ("WebSocket" in e or "net::ERR_" in e))]
        assert not unexpected, f"{p.name}'s page logged errors: {unexpected}"


@pytest.fixture
def web_server(mongo_uri, tmp_path):
    # A fixed port, so that the pages find the server again after a restart.
    env = {**dev_env(tmp_path), "PORT": str(free_port())}
    box = {"server": Server(mongo_uri, env=env), "env": env, "mongo_uri": mongo_uri}
    yield box
    box["server"].stop()


def test_two_people_chat_live_with_unread_typing_receipts_edits_and_presence(browser, web_server):
    server = web_server["server"]
    alice = Person(browser, server, "alice", shoot_sign_in=True)
    bob = Person(browser, server, "bob")
    alice.shot("01-signed-in")

    # Alice finds Bob in the directory and writes to him.
    alice.open_direct("bob")
    expect(alice.page.get_by_test_id("chat-status")).to_have_text("online", timeout=WAIT)
    alice.send("Hi Bob! Lunch at 12:30?")
    sent = alice.message("Hi Bob! Lunch at 12:30?")
    expect(sent.get_by_test_id("message-state")).to_have_text("Delivered", timeout=WAIT)
    alice.shot("02-alice-sent")

    # Bob sees it arrive live: the conversation, its preview and an unread badge, without reloading.
    row = bob.conversation("Alice")
    expect(row.get_by_test_id("conversation-preview")).to_have_text("Hi Bob! Lunch at 12:30?", timeout=WAIT)
    expect(row.get_by_test_id("unread-badge")).to_have_text("1", timeout=WAIT)
    expect(bob.page).to_have_title("(1) Chat")
    bob.shot("03-bob-unread")

    # Bob opens it: the badge goes, Alice sees "Seen".
    row.click()
    expect(bob.message("Hi Bob! Lunch at 12:30?")).to_be_visible(timeout=WAIT)
    expect(row.get_by_test_id("unread-badge")).to_be_hidden(timeout=WAIT)
    expect(sent.get_by_test_id("seen-by")).to_have_text("Seen", timeout=WAIT)

    # Bob types: Alice sees it in the header line and in her conversation list.
    bob.page.get_by_test_id("composer").press_sequentially("Sounds g", delay=30)
    expect(alice.page.get_by_test_id("typing")).to_have_text("Bob is typing…", timeout=WAIT)
    alice.shot("04-alice-sees-typing")
    bob.page.get_by_test_id("composer").press_sequentially("ood, see you there", delay=10)
    bob.page.get_by_test_id("composer").press("Enter")
    expect(alice.message("Sounds good, see you there")).to_be_visible(timeout=WAIT)
    expect(alice.page.get_by_test_id("typing")).to_have_text("", timeout=WAIT)

    # Alice edits her message, then deletes it; Bob's page follows both.
    sent.hover()
    sent.get_by_role("button", name="Edit").click()
    alice.page.get_by_test_id("composer").fill("Hi Bob! Lunch at 13:00?")
    alice.page.get_by_test_id("composer").press("Enter")
    expect(bob.message("Hi Bob! Lunch at 13:00?")).to_contain_text("edited", timeout=WAIT)
    expect(bob.message("Hi Bob! Lunch at 12:30?")).to_have_count(0)
    alice.send("Never mind")
    extra = alice.message("Never mind")
    expect(extra.get_by_test_id("message-state")).to_have_text("Delivered", timeout=WAIT)
    extra.hover()
    extra.get_by_role("button", name="Delete").click()
    alice.page.get_by_test_id("confirm-ok").click()
    expect(bob.page.get_by_text("This message was deleted")).to_be_visible(timeout=WAIT)
    expect(bob.message("Never mind")).to_have_count(0)
    # A message the server refuses (9000 UTF-8 bytes, over the 8000 limit) says so and is not delivered.
    alice.send("é" * 4500)
    refused = alice.message("é" * 4500)
    expect(refused.get_by_test_id("message-state")).to_contain_text("Not sent", timeout=WAIT)
    expect(refused.get_by_role("button", name="Retry")).to_be_visible()
    alice.shot("05-refused")
    refused.get_by_role("button", name="Discard").click()
    expect(refused).to_have_count(0)
    expect(alice.conversation("Bob").get_by_test_id("unread-badge")).to_be_hidden()   # read while open
    alice.shot("05-chatting")
    bob.shot("05-chatting")

    # Bob on a phone-sized screen: one pane, readable.
    phone = bob.context.browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = phone.new_page()
    page.goto(server.base + "/")
    page.get_by_label("Sign in as").fill("bob")
    page.get_by_role("button", name="Continue").click()
    page.get_by_test_id("conversation").first.click()
    expect(page.get_by_test_id("message-text").get_by_text("Sounds good, see you there")).to_be_visible(timeout=WAIT)
    expect(page.get_by_test_id("chat-status")).to_have_text("online", timeout=WAIT)   # presence of listed conversations
    page.screenshot(path=str(ARTIFACTS / "06-phone-bob.png"))
    phone.close()

    # Bob leaves: Alice sees him go offline, with when he was last seen.
    bob.close()
    expect(alice.page.get_by_test_id("chat-status")).to_have_text("last seen just now", timeout=WAIT)
    expect(alice.page.locator("#chat-avatar [data-testid=presence-dot]")).not_to_have_class("dot online")
    alice.shot("07-bob-offline")
    console_clean(alice)
    alice.close()


def test_a_server_restart_mid_chat_shows_the_banner_and_loses_or_doubles_nothing(browser, web_server):
    server = web_server["server"]
    alice = Person(browser, server, "alice")
    bob = Person(browser, server, "bob")
    alice.open_direct("bob")
    alice.send("Before the restart")
    expect(alice.message("Before the restart").get_by_test_id("message-state")).to_have_text("Delivered", timeout=WAIT)
    bob.conversation("Alice").click()
    expect(bob.message("Before the restart")).to_be_visible(timeout=WAIT)

    # The server goes away: both pages say so, and a message typed now waits, pending.
    server.stop()
    for person in (alice, bob):
        expect(person.page.get_by_test_id("banner")).to_contain_text("Reconnecting", timeout=WAIT)
    alice.send("Typed during the outage")
    pending = alice.message("Typed during the outage")
    expect(pending.get_by_test_id("message-state")).to_have_text("Sending…")
    alice.shot("08-outage")
    bob.shot("08-outage")

    # The same server comes back (same port, same database): the banners go by themselves, the message
    # is delivered, once.
    started = time.monotonic()
    restarted = Server(web_server["mongo_uri"], env=web_server["env"], db_name=server.db_name)
    web_server["server"] = restarted
    for person in (alice, bob):
        expect(person.page.get_by_test_id("banner")).to_be_hidden(timeout=60_000)
    expect(pending.get_by_test_id("message-state")).to_have_text("Delivered", timeout=WAIT)
    expect(bob.message("Typed during the outage")).to_have_count(1, timeout=WAIT)
    print(f"recovered {time.monotonic() - started:.1f} s after the restart began")
    alice.send("After the restart")
    expect(bob.message("After the restart")).to_be_visible(timeout=WAIT)
    expect(bob.message("Typed during the outage")).to_have_count(1)
    expect(alice.message("Typed during the outage")).to_have_count(1)
    stored = list(restarted.db.messages.find({"text": "Typed during the outage"}))
    assert len(stored) == 1, stored
    texts = [m["text"] for m in restarted.db.messages.find({"conversationId": "dm:alice:bob"}).sort("seq", 1)]
    assert texts == ["Before the restart", "Typed during the outage", "After the restart"]
    # Receipts work on the new connections too: Bob, looking at the conversation, has read it all.
    expect(alice.message("After the restart").get_by_test_id("seen-by")).to_have_text("Seen", timeout=WAIT)
    alice.shot("09-recovered")
    bob.shot("09-recovered")
    console_clean(alice, bob, outage=True)
    alice.close()
    bob.close()


def test_groups_from_the_directory_and_older_messages_on_scroll(browser, web_server):
    import json

    from websockets.sync.client import connect
    from test_web import post_token

    server = web_server["server"]
    # Carol wrote 70 messages to Alice before Alice opened the app (from another client).
    tokens = {u: json.loads(post_token(server, u)[2])["token"] for u in ("alice", "carol")}

    # websockets' synchronous client: Playwright's sync API already runs an event loop on this thread.
    with connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["chat.v1"]) as ws:
        def call(frame):
            ws.send(json.dumps(frame))
            while True:
                reply = json.loads(ws.recv(timeout=15))
                if reply.get("id") == frame["id"]:
                    assert reply["type"] in ("ok", "welcome"), reply
                    return reply
        call({"type": "auth", "id": "a", "token": tokens["carol"]})
        call({"type": "conversation.direct", "id": "d", "userId": "alice"})
        for n in range(1, 71):
            call({"type": "message.send", "id": f"s{n}", "conversationId": "dm:alice:carol", "clientId": f"c{n}", "text": f"Note {n}"})

    alice = Person(browser, server, "alice")
    bob = Person(browser, server, "bob")
    row = alice.conversation("Carol")
    expect(row.get_by_test_id("unread-badge")).to_have_text("70", timeout=WAIT)
    row.click()
    expect(alice.message("Note 70")).to_be_visible(timeout=WAIT)
    expect(alice.message("Note 1")).to_have_count(0)   # only the newest page so far
    for _ in range(10):   # scroll up until the beginning is reached: older pages load on the way
        alice.page.get_by_test_id("messages").evaluate("box => box.scrollTop = 0")
        if alice.message("Note 1").count():
            break
        alice.page.wait_for_timeout(300)
    expect(alice.message("Note 1")).to_have_count(1, timeout=WAIT)
    expect(alice.page.get_by_text("This is the beginning of the conversation")).to_be_visible(timeout=WAIT)
    assert alice.page.get_by_test_id("message").count() == 70, "each message once, none missing"
    expect(row.get_by_test_id("unread-badge")).to_be_hidden(timeout=WAIT)   # opened: read

    # Dave joins after Alice read the directory and writes to her: his name shows, not his id.
    dave = Person(browser, server, "dave")
    dave.open_direct("alice")
    dave.send("Hello from Dave")
    expect(alice.conversation("Dave").get_by_test_id("conversation-preview")).to_have_text("Hello from Dave", timeout=WAIT)
    dave.close()

    # A group with Bob and Carol, picked from the directory search.
    alice.page.get_by_test_id("new-group").click()
    alice.page.get_by_placeholder("Group name").fill("Launch team")
    for name in ("bob", "carol"):
        alice.page.get_by_placeholder("Search people").fill(name)
        alice.page.get_by_test_id("person").filter(has_text=name.capitalize()).first.click()
    alice.page.get_by_role("button", name="Create group").click()
    expect(alice.page.get_by_test_id("chat-name")).to_have_text("Launch team", timeout=WAIT)
    expect(alice.page.get_by_test_id("chat-status")).to_contain_text("3 members", timeout=WAIT)
    alice.send("Kick-off at 10?")
    expect(bob.conversation("Launch team").get_by_test_id("conversation-preview")).to_have_text("Alice: Kick-off at 10?", timeout=WAIT)
    bob.conversation("Launch team").click()
    expect(bob.message("Kick-off at 10?")).to_be_visible(timeout=WAIT)
    expect(alice.message("Kick-off at 10?").get_by_test_id("seen-by")).to_have_text("Seen by Bob", timeout=WAIT)
    alice.shot("10-group")
    # Bob leaves the group: it goes from his list, Alice's header counts two members.
    bob.page.get_by_test_id("leave-group").click()
    bob.page.get_by_test_id("confirm-ok").click()
    expect(bob.conversation("Launch team")).to_have_count(0, timeout=WAIT)
    expect(alice.page.get_by_test_id("chat-status")).to_contain_text("2 members", timeout=WAIT)
    console_clean(alice, bob)
    alice.close()
    bob.close()


FAKE_CLERK = """
// Stands in for ClerkJS (the network is not reachable from the tests): the calls the app makes.
(function () {
  const script = document.currentScript;
  const listeners = [];
  const clerk = {
    publishableKey: script.getAttribute("data-clerk-publishable-key"), user: null, session: null,
    async load() { this.loaded = true; },
    addListener(fn) { listeners.push(fn); return () => {}; },
    mountSignIn(el) {
      const b = document.createElement("button");
      b.textContent = "Sign in with Clerk";
      b.onclick = () => {
        clerk.user = { id: "user_dana", username: "dana", firstName: "Dana", lastName: "Scully", imageUrl: null };
        clerk.session = { getToken: async () => { clerk.tokens = (clerk.tokens || 0) + 1; return "%TOKEN%"; } };
        listeners.forEach((f) => f({ user: clerk.user }));
      };
      el.append(b);
    },
    unmountSignIn(el) { el.replaceChildren(); },
    async signOut() {},
  };
  window.Clerk = clerk;
})();
"""


def test_with_a_publishable_key_the_page_signs_in_through_clerk_under_the_policy(browser, mongo_uri):
    from jwt_keys import Issuer
    from test_web import publishable_key

    host = "example.clerk.accounts.dev"
    issuer = Issuer()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    # CLERK_JWT_KEY verifies without the network; CLIENT_URL is the app's origin, the tokens' azp.
    server = Server(mongo_uri, env={**issuer.env(), "CLERK_PUBLISHABLE_KEY": publishable_key(host), "PORT": str(port),
                                    "CLIENT_URL": origin, "WEB_ROOT": str(ROOT)})
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        loaded, violations = [], []
        script = FAKE_CLERK.replace("%TOKEN%", issuer.token("user_dana", azp=origin, ttl=300))
        context.route(f"https://{host}/**", lambda route: (loaded.append(route.request.url),
                                                          route.fulfill(status=200, content_type="text/javascript", body=script)))
        page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
        page.goto(server.base + "/")
        page.get_by_role("button", name="Sign in with Clerk").click()
        expect(page.locator("#app")).to_be_visible(timeout=WAIT)
        expect(page.get_by_test_id("banner")).to_be_hidden(timeout=WAIT)
        assert loaded == [f"https://{host}/npm/@clerk/clerk-js@5/dist/clerk.browser.js"]
        assert page.evaluate("() => window.Clerk.publishableKey") == publishable_key(host)
        assert page.evaluate("() => window.chat.state.connection.userId") == "user_dana"
        assert page.evaluate("() => window.Clerk.tokens") >= 1, "the socket authenticated with Clerk's getToken()"
        assert page.request.post(server.base + "/dev/token", data={"userId": "x"}).status == 404
        assert violations == [], "Clerk's script and the app load under the policy"
        # The policy holds: a script from any other host is refused.
        with page.expect_console_message(lambda m: "Content Security Policy" in m.text and "cdn.example.net" in m.text, timeout=WAIT):
            page.evaluate("""() => { const s = document.createElement('script'); s.src = 'https://cdn.example.net/x.js';
                                     document.head.append(s); }""")
        page.screenshot(path=str(ARTIFACTS / "11-clerk-mode.png"))
    finally:
        context.close()
        server.stop()


def test_when_clerk_cannot_be_reached_the_page_says_so(browser, mongo_uri):
    from jwt_keys import Issuer
    from test_web import publishable_key

    host = "example.clerk.accounts.dev"
    server = Server(mongo_uri, env={**Issuer().env(), "CLERK_PUBLISHABLE_KEY": publishable_key(host), "WEB_ROOT": str(ROOT)})
    context = browser.new_context(viewport=PHONE)
    try:
        context.route(f"https://{host}/**", lambda route: route.abort("internetdisconnected"))
        page = context.new_page()
        page.goto(server.base + "/")
        expect(page.get_by_role("alert").filter(has_text="Sign-in could not start")).to_be_visible(timeout=WAIT)
        expect(page.get_by_label("Sign in as")).to_be_hidden()   # no development sign-in offered instead
        page.screenshot(path=str(ARTIFACTS / "12-clerk-unreachable.png"))
    finally:
        context.close()
        server.stop()
