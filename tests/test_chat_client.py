"""chat-client end to end: the scriptable subcommands, catch-up after a SIGKILL and after a server
restart, error lines, and the interactive mode driven through a pseudo-terminal (pexpect)."""
import datetime
import json
import os
import pathlib
import queue
import signal
import subprocess
import threading
import time
import uuid

import pexpect
import pytest

from conftest import ROOT, Server, free_port
from jwt_keys import Issuer

CLIENT_BIN = os.environ.get("CHAT_CLIENT_BIN", str(ROOT / ".build" / "debug" / "chat-client"))
ISSUER = Issuer()
# No ALLOWED_ORIGINS: the client sends no Origin header (as a native client should), so a server
# with the default settings of `make run` must take it.
SERVER_ENV = ISSUER.env()


def uid(name):
    return f"user_{name}_{uuid.uuid4().hex[:8]}"


def url(server):
    return f"ws://127.0.0.1:{server.port}/ws"


def client_env():
    return {k: v for k, v in os.environ.items() if k not in ("CHAT_URL", "CHAT_TOKEN")}


def run(server, user, *args, timeout=60, token=None):
    """A one-shot subcommand; returns (exit status, JSON lines, stderr)."""
    cmd = [CLIENT_BIN, *args, "--url", url(server), "--token", token or ISSUER.token(user, ttl=600)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=client_env())
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines() if line.strip()], p.stderr


class Script:
    """`chat-client script` in the background: requests in, every output line collected."""

    def __init__(self, server, user, *extra, port=None):
        self.user = user
        target = f"ws://127.0.0.1:{port}/ws" if port else url(server)
        self.proc = subprocess.Popen(
            [CLIENT_BIN, "script", "--url", target, "--token", ISSUER.token(user, ttl=600), "--max-backoff", "1", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
        self.lines = []
        self.cursor = 0
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        self.expect(lambda f: f["type"] == "welcome")

    def _pump(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(json.loads(line))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def send(self, **frame):
        self.proc.stdin.write(json.dumps(frame) + "\n")
        self.proc.stdin.flush()

    def request(self, **frame):
        frame.setdefault("id", uuid.uuid4().hex[:8])
        self.send(**frame)
        reply = self.expect(lambda f: f["type"] in ("ok", "error") and f.get("id") == frame["id"], consume=False)
        assert reply["type"] == "ok", reply
        return reply["data"]

    def expect(self, predicate, timeout=30, consume=True):
        """The first line from the cursor on that matches (the cursor moves past it when consumed)."""
        deadline = time.time() + timeout
        with self.changed:
            while True:
                for i in range(self.cursor, len(self.lines)):
                    if predicate(self.lines[i]):
                        if consume:
                            self.cursor = i + 1
                        return self.lines[i]
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{self.user}: no matching line in {timeout} s; got {self.lines}; "
                                         f"stderr: {self.stderr()}")
                self.changed.wait(min(left, 0.5))

    def wait_presence(self, user, online, timeout=30):
        """Waits until the latest presence line about `user` says `online`. Presence is a state, not a
        log: the server coalesces flaps (a connection that ends as the next one starts) into nothing."""
        deadline = time.time() + timeout
        with self.changed:
            while True:
                states = [f["isOnline"] for f in self.lines if f["type"] == "presence" and f["userId"] == user]
                if states and states[-1] is online:
                    return
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{self.user}: {user} not {'online' if online else 'offline'} in {timeout} s; "
                                         f"got {self.lines}; stderr: {self.stderr()}")
                self.changed.wait(min(left, 0.5))

    def messages(self):
        with self.changed:
            return [f["message"] for f in self.lines if f["type"] == "message"]

    def stderr(self):
        """What the client wrote to stderr, once it has exited."""
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def chat_server(mongo_uri):
    s = Server(mongo_uri, env=SERVER_ENV)
    yield s
    s.stop()


def test_two_scripted_clients_exchange_messages_and_see_each_others_presence(chat_server, tmp_path):
    alice, bob = uid("alice"), uid("bob")
    b = Script(chat_server, bob)
    try:
        assert b.request(type="presence.subscribe", userIds=[alice])["users"][0]["isOnline"] is False

        status, out, err = run(chat_server, alice, "wait-for", "presence", "--user", bob, "--online", "true", "--timeout", "30")
        assert status == 0, err
        assert (out[0]["type"], out[0]["userId"], out[0]["isOnline"]) == ("presence", bob, True)
        # She came and went. From here on bob's last word on her is "offline", so however her next
        # sockets overlap, the waiter below leaves her online and bob must hear it.
        b.wait_presence(alice, False)

        status, out, err = run(chat_server, alice, "send", "--to", bob, "--text", "hi bob")
        assert status == 0, err
        ack = out[0]
        cid = ack["conversationId"]
        assert ack["seq"] == 1 and ack["messageId"]
        got = b.expect(lambda f: f["type"] == "message")["message"]
        assert (got["text"], got["senderId"], got["messageId"]) == ("hi bob", alice, ack["messageId"])

        # Alice waits for the answer; with --state she cannot miss it, whoever is first.
        state = tmp_path / "alice.json"
        state.write_text(json.dumps({"positions": {cid: ack["seq"]}}))
        waiter = subprocess.Popen(
            [CLIENT_BIN, "wait-for", "message", "--from", bob, "--text-contains", "hello alice", "--state", str(state),
             "--timeout", "60", "--url", url(chat_server), "--token", ISSUER.token(alice, ttl=600)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
        b.wait_presence(alice, True)   # the waiter is online
        b.request(type="message.send", conversationId=cid, text="hello alice ☕")
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        found = json.loads(out.splitlines()[0])
        assert found["type"] == "message" and found["message"]["text"] == "hello alice ☕"
        b.wait_presence(alice, False)

        status, out, err = run(chat_server, alice, "history", "--conversation", cid)
        assert status == 0, err
        assert [(m["seq"], m["text"]) for m in out] == [(1, "hi bob"), (2, "hello alice ☕")]
        status, out, err = run(chat_server, bob, "conversations")
        assert status == 0 and out[0]["conversationId"] == cid and out[0]["unread"] == 1, (out, err)
        group = b.request(type="conversation.create", name="pair", members=[alice])["conversation"]["conversationId"]
        status, out, err = run(chat_server, bob, "conversations", "--limit", "1")
        assert status == 0 and [c["conversationId"] for c in out] == [group], (out, err)
        status, out, err = run(chat_server, bob, "conversations", "--limit", "1", "--all")
        assert status == 0 and [c["conversationId"] for c in out] == [group, cid], (out, err)
        status, out, err = run(chat_server, alice, "who", "--online")
        assert status == 0 and bob in [u["userId"] for u in out], (out, err)
    finally:
        b.close()
    status, out, err = run(chat_server, alice, "wait-for", "presence", "--user", bob, "--online", "false", "--timeout", "30")
    assert status == 0 and out[0]["isOnline"] is False, err


def test_a_killed_client_restarts_from_its_state_file_and_shows_nothing_twice(chat_server, tmp_path):
    alice, bob = uid("alice"), uid("bob")
    state = str(tmp_path / "bob.state")
    b = Script(chat_server, bob, "--state", state)
    a = Script(chat_server, alice)
    try:
        cid = a.request(type="conversation.direct", userId=bob)["conversation"]["conversationId"]
        for i in range(1, 4):
            a.request(type="message.send", conversationId=cid, text=f"m{i}")
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "m3")
        first = b.messages()
        b.kill()
        for i in range(4, 9):   # while bob is gone
            a.send(type="message.send", conversationId=cid, text=f"m{i}")
        a.expect(lambda f: f["type"] == "ok" and f["data"].get("seq") == 8)

        b = Script(chat_server, bob, "--state", state)
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "m8")
        a.request(type="message.send", conversationId=cid, text="m9")
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "m9")
        second = b.messages()
        assert [m["text"] for m in first] == ["m1", "m2", "m3"]
        assert [m["text"] for m in second] == [f"m{i}" for i in range(4, 10)]
        assert json.loads(pathlib.Path(state).read_text())["positions"][cid] == 9
    finally:
        a.close()
        b.close()


def test_a_connected_client_reconnects_after_a_server_restart_and_catches_up(mongo_uri):
    first = Server(mongo_uri, env=SERVER_ENV)
    other = Server(mongo_uri, env=SERVER_ENV, db_name=first.db_name)   # where alice sends while the first is down
    port = first.port
    alice, bob = uid("alice"), uid("bob")
    b = Script(first, bob)
    a = Script(other, alice)
    restarted = None
    try:
        cid = a.request(type="conversation.direct", userId=bob)["conversation"]["conversationId"]
        a.request(type="message.send", conversationId=cid, text="before")
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "before")

        first.stop()                                   # SIGTERM: bob is closed with "restarting"
        b.expect(lambda f: f["type"] == "disconnected")
        a.request(type="message.send", conversationId=cid, text="while down 1")
        a.request(type="message.send", conversationId=cid, text="while down 2")
        restarted = Server(mongo_uri, env={**SERVER_ENV, "PORT": str(port)}, db_name=first.db_name)
        b.expect(lambda f: f["type"] == "welcome" and f["resumed"] is True, timeout=60)
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "while down 2", timeout=30)
        a.request(type="message.send", conversationId=cid, text="after")
        b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "after", timeout=30)
        assert [m["text"] for m in b.messages()] == ["before", "while down 1", "while down 2", "after"]
        assert [m["seq"] for m in b.messages()] == [1, 2, 3, 4]
    finally:
        a.close()
        b.close()
        other.stop()
        if restarted:
            restarted.stop()


def test_failures_are_one_clear_line_on_stderr(chat_server):
    alice = uid("alice")
    stranger = Issuer()   # a key the server does not trust
    status, out, err = run(chat_server, alice, "who", token=stranger.token(alice))
    assert status == 1 and out == []
    assert err.splitlines() == ["chat-client: the server refused the token (token_invalid: bad_signature)"]

    status, _, err = run(chat_server, alice, "who", token=ISSUER.token(alice, ttl=-60, nbf_offset=-120, iat_offset=-120))
    assert status == 1 and len(err.splitlines()) == 1 and err.startswith("chat-client: the token has expired"), err

    nobody = subprocess.run([CLIENT_BIN, "who", "--url", f"ws://127.0.0.1:{free_port()}/ws", "--token", ISSUER.token(alice)],
                            capture_output=True, text=True, timeout=60, env=client_env())
    assert nobody.returncode == 1 and len(nobody.stderr.splitlines()) == 1
    assert nobody.stderr.startswith("chat-client: cannot reach the server at ws://127.0.0.1:"), nobody.stderr

    status, _, err = run(chat_server, alice, "send", "--conversation", "g_doesnotexist", "--text", "hello?")
    assert status == 1 and len(err.splitlines()) == 1
    assert err.startswith("chat-client: the server refused the request (not_found: "), err

    status, _, err = run(chat_server, alice, "wait-for", "message", "--text-contains", "never", "--timeout", "1")
    assert status == 1 and err.splitlines() == ["chat-client: timed out after 1 s waiting for a message containing 'never'"]

    no_token = subprocess.run([CLIENT_BIN, "who", "--url", url(chat_server)], capture_output=True, text=True, timeout=30,
                              env=client_env())
    assert no_token.returncode == 1 and no_token.stderr.startswith("chat-client: no token"), no_token.stderr


def test_user_flag_mints_with_the_development_key_and_plain_mode_reads_lines(mongo_uri, tmp_path):
    keys = tmp_path / "keys"
    public = subprocess.run([str(ROOT / ".build" / "debug" / "chat-server"), "dev-keys", "--dir", str(keys)],
                            capture_output=True, text=True, check=True).stdout
    server = Server(mongo_uri, env={"CLERK_JWT_KEY": public.replace("\n", "\\n")})
    alice, bob = uid("alice"), uid("bob")
    try:
        dev = ["--url", url(server), "--keys-dir", str(keys)]
        assert subprocess.run([CLIENT_BIN, "who", *dev, "--user", bob], capture_output=True, timeout=60,
                              env=client_env()).returncode == 0
        # Not a terminal: the interactive client reads lines and prints plain text.
        plain = subprocess.run([CLIENT_BIN, *dev, "--user", alice], input=f"/dm {bob}\nhello from a pipe\n",
                               capture_output=True, text=True, timeout=60, env=client_env())
        assert plain.returncode == 0, plain.stderr
        assert "\x1b[" not in plain.stdout and "hello from a pipe" in plain.stdout
        status = subprocess.run([CLIENT_BIN, "conversations", *dev, "--user", bob], capture_output=True, text=True,
                                timeout=60, env=client_env())
        listed = json.loads(status.stdout.splitlines()[0])
        assert listed["lastMessage"]["text"] == "hello from a pipe" and listed["unread"] == 1
    finally:
        server.stop()


def test_interactive_mode_in_a_terminal(chat_server):
    alice, bob = uid("alice"), uid("bob")
    assert run(chat_server, bob, "who")[0] == 0          # bob exists, so alice watches him from the start
    shell = (f"stty -g; {CLIENT_BIN} --url {url(chat_server)} --token {ISSUER.token(alice, ttl=600)}; "
             "echo EXIT=$?; stty -g")
    child = pexpect.spawn("bash", ["-c", shell], env={**client_env(), "TERM": "xterm"}, encoding="utf-8",
                          timeout=30, dimensions=(30, 120))
    b = None
    try:
        child.expect(r"([0-9a-f:]{20,})\r")
        settings_before = child.match.group(1)
        child.expect(f"connected to .* as {alice}")
        child.expect(f"{bob}.*last seen")                 # /who at start: bob offline
        b = Script(chat_server, bob)
        child.expect(f"{bob}.*is online")
        child.send(f"/dm {bob}\r")
        child.expect(f"── {bob} ──")
        child.expect("no messages yet")
        for ch in "hello bob":                         # typed key by key: bob sees "typing"
            child.send(ch)
            time.sleep(0.02)
        b.expect(lambda f: f["type"] == "typing" and f["userId"] == alice, consume=False)
        child.send("\r")
        mine = b.expect(lambda f: f["type"] == "message" and f["message"]["text"] == "hello bob")["message"]
        b.send(type="message.send", conversationId=mine["conversationId"], text="hi alice, from bob")
        child.expect("hi alice, from bob")
        b.expect(lambda f: f["type"] == "read" and f["userId"] == alice and f["seq"] == 2)   # shown, so read
        child.send("/quit\r")
        child.expect(r"EXIT=(\d+)")
        assert child.match.group(1) == "0"
        child.expect(r"([0-9a-f:]{20,})\r")
        assert child.match.group(1) == settings_before      # raw mode undone
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        if b:
            b.close()


def test_wss_with_a_self_signed_certificate_needs_insecure(mongo_uri, tmp_path):
    from test_tls import self_signed
    cert, key = self_signed(tmp_path)
    server = Server(mongo_uri, env={**SERVER_ENV, "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key})
    alice = uid("alice")
    try:
        wss = ["--url", f"wss://127.0.0.1:{server.port}/ws", "--token", ISSUER.token(alice)]
        refused = subprocess.run([CLIENT_BIN, "who", *wss], capture_output=True, text=True, timeout=60, env=client_env())
        assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
        assert "TLS" in refused.stderr and "--insecure" in refused.stderr, refused.stderr
        ok = subprocess.run([CLIENT_BIN, "who", *wss, "--insecure"], capture_output=True, text=True, timeout=60, env=client_env())
        assert ok.returncode == 0, ok.stderr
        assert alice in [json.loads(line)["userId"] for line in ok.stdout.splitlines()]
    finally:
        server.stop()


def test_interactive_client_watches_users_past_the_first_directory_page(chat_server):
    # 1,005 users: users.query pages hold at most 200 and presence.subscribe takes at most 1,000 ids,
    # so the last ones sort onto the sixth page and into a second subscription. The client must page
    # through, watch all of them and say that its start screen's list is cut. The users are stored
    # as the webhook stores them (README, "Stored schema"): 1,005 deliveries would take a while.
    run_id = uuid.uuid4().hex[:6]
    now = datetime.datetime.now(datetime.timezone.utc)
    ids = [f"user_{run_id}_{n:04d}" for n in range(1005)]
    chat_server.db.users.insert_many([
        {"clerkId": user, "username": f"p{run_id}{n:04d}", "email": None, "firstName": None, "lastName": None,
         "imageUrl": None, "isOnline": False, "lastSeen": now, "deleted": False, "createdAt": now, "updatedAt": now}
        for n, user in enumerate(ids)])
    alice = f"user_{run_id}_aaaa"         # sorts first: every one of them is "another user"
    last = ids[-1]
    shell = f"{CLIENT_BIN} --url {url(chat_server)} --token {ISSUER.token(alice, ttl=600)}"
    child = pexpect.spawn("bash", ["-c", shell], env={**client_env(), "TERM": "xterm"}, encoding="utf-8",
                          timeout=60, dimensions=(30, 160))
    b = None
    try:
        child.expect(f"connected to .* as {alice}")
        child.expect(r"users \(1005\):")
        child.expect(r"… and 805 more users not shown: /who lists them all")
        b = Script(chat_server, last)                  # on the directory's last page, in the second chunk
        child.expect(f"p{run_id}1004.* is online", timeout=30)
        b.close()
        child.expect(f"p{run_id}1004 went offline", timeout=30)
        child.send("/quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        if b:
            b.close()


def test_the_typing_line_stops_at_that_users_message(chat_server):
    alice, bob = uid("alice"), uid("bob")
    assert run(chat_server, bob, "who")[0] == 0
    shell = f"{CLIENT_BIN} --url {url(chat_server)} --token {ISSUER.token(alice, ttl=600)}"
    child = pexpect.spawn("bash", ["-c", shell], env={**client_env(), "TERM": "xterm"}, encoding="utf-8",
                          timeout=30, dimensions=(30, 160))
    b = Script(chat_server, bob)
    try:
        child.expect(f"connected to .* as {alice}")
        child.send(f"/dm {bob}\r")
        child.expect("no messages yet")
        cid = b.request(type="conversation.direct", userId=alice)["conversation"]["conversationId"]
        assert b.request(type="typing", conversationId=cid) == {"sent": True}
        child.expect(f"{bob} is typing…")
        b.send(type="message.send", conversationId=cid, text="done typing")
        child.expect("done typing")
        # The status line drawn with the message (before the next prompt) no longer says so: the
        # signal's 5 s have not passed, the message ended it.
        child.expect(r"\] > ")
        assert "typing" not in child.before, repr(child.before)
        child.send("/quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        b.close()


def test_without_url_the_client_finds_the_server_on_port(chat_server, tmp_path):
    # As chat-server does: PORT from the environment, else from .env in the working directory.
    alice = uid("alice")
    base = [CLIENT_BIN, "who", "--token", ISSUER.token(alice)]
    env = {k: v for k, v in client_env().items() if k != "PORT"}
    by_env = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**env, "PORT": str(chat_server.port)})
    assert by_env.returncode == 0 and alice in by_env.stdout, by_env.stderr
    (tmp_path / ".env").write_text(f"# local\nexport PORT='{chat_server.port}'\n")
    by_file = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert by_file.returncode == 0 and alice in by_file.stdout, by_file.stderr


def test_a_restarted_client_catches_up_past_the_servers_page_bound(chat_server, tmp_path):
    # Six groups of twelve messages that escape to 48 KB each: far more than one sync reply carries
    # (256 KiB). The client syncs again while the reply says `hasMore`, and shows each message once.
    alice, bob = uid("alice"), uid("bob")
    state = str(tmp_path / "bob.state")
    b = Script(chat_server, bob, "--state", state)
    a = Script(chat_server, alice)
    try:
        cids = [a.request(type="conversation.create", name=f"g{n}", members=[bob])["conversation"]["conversationId"]
                for n in range(6)]
        b.expect(lambda f: f["type"] == "conversation" and f["conversation"]["conversationId"] == cids[-1])
        b.kill()
        for cid in cids:
            for i in range(12):
                a.send(type="message.send", id=f"{cid}-{i}", conversationId=cid, text=f"{i:02d}" + "\u0002" * 7998)
        for cid in cids:
            for i in range(12):
                a.expect(lambda f: f.get("id") == f"{cid}-{i}" and f["type"] == "ok", timeout=90, consume=False)

        b = Script(chat_server, bob, "--state", state)
        deadline = time.time() + 90
        while len(b.messages()) < 72 and time.time() < deadline:
            time.sleep(0.5)
        got = {}
        for m in b.messages():
            got.setdefault(m["conversationId"], []).append(m["seq"])
        assert {cid: sorted(got.get(cid, [])) for cid in cids} == {cid: list(range(1, 13)) for cid in cids}
        assert len(b.messages()) == 72, "each message once"
    finally:
        a.close()
        b.close()
