"""README.md's and docs/chat-client.md's walk-throughs, followed as a newcomer would: in a clean copy
of the repository (its files as a clone has them: no `.dev-keys/`, `.env` or `.data/`), `make run`
as written, then the commands of the docs' code blocks as written, the interactive client in a
terminal (pexpect), and the Quick start's `send-webhook`. Each walk-through runs twice, one after
the other, on one database. Only PORT (a free port) and MONGODB_URI (a throwaway embedded MongoDB)
are set; the docs say port 3000, so that number is read as PORT.

The copy lives in `.build/walkthrough/` and keeps its own `.build/`, so only the first run pays for
`make run`'s release build; its other files are made equal to the repository's each time. Its
`.venv` is the repository's (a clone would create one from requirements-dev.txt with pip)."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import threading
import time

import pexpect
import pymongo
import pytest

from conftest import ROOT, Mongo, free_port

CLONE = ROOT / ".build" / "walkthrough"
README = (ROOT / "README.md").read_text()
CLIENT_DOC = (ROOT / "docs" / "chat-client.md").read_text()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
# The first `make run` in a clean copy builds chat-server and chat-client in release mode.
BUILD_SECONDS = 1500


def section(doc, title):
    body = doc.split(title, 1)[1]
    return body.split("\n## ", 1)[0]


def code_blocks(text):
    return [block.strip("\n").splitlines() for block in re.findall(r"```(?:sh)?\n(.*?)```", text, re.S)]


def fresh_copy():
    """The repository's files (tracked, and new ones not ignored), as a clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    wanted = {name for name in listed if name and (ROOT / name).is_file()}
    CLONE.mkdir(parents=True, exist_ok=True)
    seen_directories = []
    for directory, subdirectories, files in os.walk(CLONE):
        here = pathlib.Path(directory)
        if here == CLONE:
            subdirectories[:] = [d for d in subdirectories if d not in (".build", ".venv")]   # they stay
        seen_directories.append(here)
        for name in files:
            relative = (here / name).relative_to(CLONE).as_posix()
            if relative not in wanted and relative != "Package.resolved":   # kept with .build: no re-resolving
                (here / name).unlink()
    for here in reversed(seen_directories):
        if here != CLONE and not any(here.iterdir()):
            here.rmdir()
    for name in wanted:
        source, target = ROOT / name, CLONE / name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)           # the same mtime: an unchanged file is not rebuilt
    for state in (".dev-keys", ".data", ".env"):
        assert not (CLONE / state).exists(), state
    venv = CLONE / ".venv"
    if not venv.is_symlink():
        venv.symlink_to((ROOT / ".venv").resolve())
    # The venv is installed already: make must not think requirements-dev.txt changed since.
    installed = venv / ".installed"
    if installed.exists():
        stamp = installed.stat().st_mtime - 1
        os.utime(CLONE / "requirements-dev.txt", (stamp, stamp))


def user_env(port, mongo_uri):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLERK_", "CHAT_")) and k not in ("NODE_ENV", "MONGODB_URI", "PORT", "HOST", "NO_COLOR")}
    env.update({"PORT": str(port), "MONGODB_URI": mongo_uri, "TERM": "xterm"})
    return env


class MakeRun:
    """Terminal 1: `make run`, in its own process group (Ctrl-C reaches all of it, as in a terminal)."""

    def __init__(self, command, env):
        self.lines = []
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=CLONE, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, text, timeout):
        deadline = time.time() + timeout
        with self.changed:
            while not any(text in line for line in self.lines):
                assert self.proc.poll() is None, "make run ended:\n" + "\n".join(self.lines[-60:])
                assert time.time() < deadline, f"no '{text}' in {timeout} s:\n" + "\n".join(self.lines[-60:])
                self.changed.wait(1)

    def interrupt(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class Terminal:
    """An interactive chat-client in a pseudo-terminal; what it shows is read without colours."""

    def __init__(self, command, env):
        self.child = pexpect.spawn("bash", ["-c", command], cwd=str(CLONE), env=env, encoding="utf-8",
                                   timeout=30, dimensions=(40, 160))
        self.raw = ""
        self.cursor = 0

    def screen(self):
        return ANSI.sub("", self.raw)

    def wait_for(self, pattern, timeout=30, regex=False):
        """The first match of `pattern` (literal unless regex) after the previous one."""
        deadline = time.time() + timeout
        while True:
            text = self.screen()
            found = re.compile(pattern if regex else re.escape(pattern)).search(text, self.cursor)
            if found:
                self.cursor = found.end()
                return found
            if time.time() > deadline:
                raise AssertionError(f"no {pattern!r} on screen in {timeout} s; after the last match:\n"
                                     + text[self.cursor:][-3000:])
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                if not re.compile(pattern if regex else re.escape(pattern)).search(self.screen(), self.cursor):
                    raise AssertionError(f"client ended before {pattern!r}:\n" + self.screen()[-3000:])

    def type(self, line, keystrokes=False):
        if keystrokes:
            for ch in line:
                self.child.send(ch)
                time.sleep(0.03)
            self.child.send("\r")
        else:
            self.child.send(line + "\r")

    def finish(self):
        """Waits for the client to exit by itself; its exit status."""
        deadline = time.time() + 30
        while self.child.isalive() and time.time() < deadline:
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.5)
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
        self.child.close(force=True)
        return self.child.exitstatus

    def kill(self):
        self.child.close(force=True)


def shell(command, env, timeout=60):
    return subprocess.run(["bash", "-c", command], cwd=CLONE, env=env, capture_output=True, text=True, timeout=timeout)


def on_port(text, port):
    return text.replace("3000", str(port))


@pytest.fixture(scope="module")
def newcomer():
    fresh_copy()
    mongo = Mongo()
    port = free_port()
    uri = f"mongodb://127.0.0.1:{mongo.port}/chat"
    env = user_env(port, uri)
    first = code_blocks(section(README, "## Try it: two terminals"))[0]
    assert first == ["make run"], first
    server = MakeRun(first[0], env)
    try:
        banner = re.search(r"Wait for `([^`]+)`", section(README, "## Try it: two terminals")).group(1)
        server.wait_for(on_port(banner, port), BUILD_SECONDS)
        yield {"env": env, "port": port, "server": server, "db": pymongo.MongoClient(mongo.uri, directConnection=True).chat}
        server.interrupt()                                                 # Ctrl-C in terminal 1
        assert any(line.endswith("stopped") for line in server.lines), "\n".join(server.lines[-40:])
    finally:
        server.interrupt()
        mongo.remove()


def readme_two_terminals(run, second_time):
    env, port = run["env"], run["port"]
    text = section(README, "## Try it: two terminals")
    blocks = code_blocks(text)
    signs_in, interactive = blocks[1]
    assert signs_in == ".build/release/chat-client who --user bob"
    who = shell(signs_in, env)
    assert who.returncode == 0, who.stderr
    assert "bob" in [json.loads(line)["userId"] for line in who.stdout.splitlines()]

    typed = re.search(r"In Alice's client type `([^`]+)`, then `([^`]+)`, then `([^`]+)`", text).groups()
    assert typed == ("/dm bob", "hello bob", "/quit"), typed
    alice = Terminal(interactive, env)
    try:
        alice.wait_for(f"connected to ws://127.0.0.1:{port}/ws as alice")
        alice.type(typed[0])
        alice.wait_for("── bob ──")
        if second_time:
            alice.wait_for("<alice> hello bob")        # the first run's message, in the history shown
        alice.type(typed[1])
        alice.wait_for("<alice> hello bob")
        alice.type(typed[2])
        assert alice.finish() == 0, alice.screen()[-2000:]
    finally:
        alice.kill()

    (history,) = blocks[2]
    assert history == ".build/release/chat-client history --user bob --conversation dm:alice:bob"
    out = shell(history, env)
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(m["senderId"], m["text"]) for m in messages] == [("alice", "hello bob")] * (2 if second_time else 1)


def quick_start(run, second_time):
    env, port = run["env"], run["port"]
    lines = [line.split("#")[0].strip() for line in code_blocks(section(README, "## Quick start"))[0]]
    assert lines[0] == "make run"                       # terminal 1: running already
    mint, webhook, ready = lines[1:]
    token = shell(mint, env)
    assert token.returncode == 0 and re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", token.stdout), token
    sent = shell(webhook, env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith('200 {"status":"%s"}' % ("superseded" if second_time else "applied")), sent.stdout
    user = run["db"].users.find_one({"clerkId": "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef"})
    assert (user["username"], user["email"]) == ("john_doe", "john@example.com")
    answer = shell(on_port(ready, port), env)
    assert answer.returncode == 0 and json.loads(answer.stdout) == {"status": "ready"}, answer


def client_doc_three_terminals(run, second_time):
    env, port = run["env"], run["port"]
    text = section(CLIENT_DOC, "## Walk-through: Carol and Dave on one machine")
    blocks = code_blocks(text)
    assert blocks[0] == ["make run"]                   # terminal 1: running already
    (carol_cmd,), (dave_cmd,), carol_types, dave_types, changes = blocks[1:6]
    assert (carol_cmd, dave_cmd) == (".build/release/chat-client --user carol", ".build/release/chat-client --user dave")

    carol = Terminal(carol_cmd, env)
    dave = None
    try:
        carol.wait_for(on_port(re.search(r"You see `([^`]+)`", text).group(1), port))
        carol.wait_for(r"\d+ online", regex=True)      # the status line: start-up done
        dave = Terminal(dave_cmd, env)
        dave.wait_for(r"\d+ online", regex=True)
        carol.wait_for(re.search(r"In Carol's terminal a line `([^`]+)` appears", text).group(1))

        assert carol_types == ["/dm dave", "hello dave"]
        for line in carol_types:
            carol.type(line)
        if not second_time:
            dave.wait_for(re.search(r"Dave sees `([^`]+)`", text).group(1))
        dave.wait_for("[carol] <carol> hello dave")

        assert dave_types == ["/open 1", "hi carol"]
        dave.type(dave_types[0])
        dave.wait_for("── carol ──")
        dave.type(dave_types[1], keystrokes=True)
        carol.wait_for(re.search(r"Carol's status line shows `([^`]+)`", text).group(1))
        number = int(carol.wait_for(r"\d\d:\d\d #(\d+) <dave> hi carol", regex=True).group(1))
        assert number == (5 if second_time else 2)   # the first run left #1-#3
        dave.wait_for(re.search(r"Dave's status line shows `([^`]+)`", text).group(1))

        assert [line.split(" ", 1)[0] for line in changes] == ["/edit", "/delete"] and all(" #2" in l for l in changes)
        # "take the number on your screen"; one after the other, as a person sees each take effect.
        dave.type(changes[0].replace("#2", f"#{number}"))
        carol.wait_for(f"#{number} <dave> hi Carol! (edited)")
        dave.type(changes[1].replace("#2", f"#{number}"))
        carol.wait_for(f"#{number} <dave> (message deleted)")

        dave.type("/quit")
        assert dave.finish() == 0
        carol.wait_for(re.search(r"Carol's terminal then shows\s+`([^`]+)`", text).group(1))
        carol.type("are you there?")
        carol.wait_for("<carol> are you there?")
        dave = Terminal(dave_cmd, env)                 # "Restart Dave's client"
        dave.wait_for("[1] carol (direct)  1 unread")
        dave.type("/open 1")
        dave.wait_for("<carol> are you there?")
        dave.type("/quit")
        assert dave.finish() == 0
        carol.type("/quit")
        assert carol.finish() == 0
    finally:
        carol.kill()
        if dave:
            dave.kill()


@pytest.mark.timeout(BUILD_SECONDS + 600)
def test_the_docs_walk_throughs_work_as_written_twice_in_a_row(newcomer):
    lines = "\n".join(newcomer["server"].lines)
    # The start-up lines say which webhook secret is in use and how to use Clerk's.
    assert "webhooks verified with the local secret in .dev-keys/webhook-secret" in lines, lines[-3000:]
    assert "CLERK_WEBHOOK_SECRET=whsec_" in lines
    assert (CLONE / ".dev-keys" / "webhook-secret").read_text().startswith("whsec_")
    for second_time in (False, True):
        quick_start(newcomer, second_time)
        readme_two_terminals(newcomer, second_time)
        client_doc_three_terminals(newcomer, second_time)
