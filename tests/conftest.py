"""Fixtures for the end-to-end tests that drive chat-server with third-party clients
(the official Svix signer, pymongo, websockets, PyJWT). `make test` sets the environment."""
import atexit
import os
import sys
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pymongo
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_children = []
# Every chat-server and tool started here: libmongoc keeps its counters in memory instead of
# /dev/shm/mongoc-<pid>, which killed processes leave behind ("Falling back to malloc for counters."
# on stderr of a later process with the same pid, an extra line a one-line check counts).
os.environ["MONGOC_DISABLE_SHM"] = "1"


def _reap():
    # Databases and servers started here must not outlive the run, even when it is interrupted.
    for proc in _children:
        if proc.poll() is None:
            proc.kill()


atexit.register(_reap)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
FIXTURES = ROOT / "Tests" / "Fixtures" / "clerk"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SERVER_BIN = os.environ.get("CHAT_SERVER_BIN", str(ROOT / ".build" / "debug" / "chat-server"))
SECANTUSD = os.environ.get("SECANTUSD", str(ROOT / ".venv" / "bin" / "secantusd-py"))


_servers_this_test = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failed test shows what its servers logged: a presence or delivery failure is read there.
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)   # fixtures can see how the test went (browser screenshots)
    if report.when == "call" and report.failed:
        for n, server in enumerate(_servers_this_test):
            report.sections.append((f"chat-server {n} log (last 150 lines)", "\n".join(server.lines[-150:])))
    if report.when == "teardown":
        _servers_this_test.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Mongo:
    """An embedded MongoDB (SecantusDB) of the test's own, to stop and restart."""

    def __init__(self):
        self.port = free_port()
        self.storage = tempfile.mkdtemp(prefix="secantus-")
        self.proc = None
        self.start()

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            [SECANTUSD, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage,
             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _children.append(self.proc)
        assert wait_port(self.port), "embedded MongoDB did not start"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def remove(self):
        self.kill()
        shutil.rmtree(self.storage, ignore_errors=True)


class Server:
    """A chat-server process on a kernel-chosen port."""

    def __init__(self, mongo_uri, env=None, db_name=None, cwd=None):
        self.db_name = db_name or "py_" + uuid.uuid4().hex[:12]
        self.mongo_uri = f"{mongo_uri}/{self.db_name}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("CLERK_") and k != "MONGODB_URI"}
        full.update({"NODE_ENV": "test", "PORT": "0", "HOST": "127.0.0.1", "MONGODB_URI": self.mongo_uri,
                     "CLERK_WEBHOOK_SECRET": WEBHOOK_SECRET, "SHUTDOWN_GRACE_SECONDS": "5",
                     "LOG_LEVEL": "debug"})
        full.update(env or {})
        self.lines = []
        _servers_this_test.append(self)
        self.proc = subprocess.Popen([SERVER_BIN, "serve", "--env-file", "/nonexistent"], env=full, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _children.append(self.proc)
        self.port = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"Server running on port (\d+)", line) or re.search(r'"msg":"Server running".*"port":"(\d+)"', line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(30)
        assert self.port, "chat-server did not start:\n" + "\n".join(self.lines)
        self.client = pymongo.MongoClient(mongo_uri, directConnection=True, serverSelectionTimeoutMS=5000)
        self.db = self.client[self.db_name]

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def metrics(self):
        """/metrics read by the Prometheus project's own parser: {(name, sorted labels): value}."""
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        text = urllib.request.urlopen(self.base + "/metrics", timeout=10).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.client.close()


def answers(uri):
    """Whether the database takes a write within a few seconds."""
    client = pymongo.MongoClient(uri, directConnection=True, serverSelectionTimeoutMS=3000,
                                 connectTimeoutMS=3000, socketTimeoutMS=5000)
    try:
        client.health.probe.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="module")
def module_mongo():
    # A fresh embedded MongoDB per test file: one shared by the whole run piles up databases and
    # change-stream cursors until its single global lock starves every test.
    if os.environ.get("CHAT_TEST_PYTHON_MONGODB_URI"):
        yield None
        return
    box = {"mongo": Mongo()}
    yield box
    box["mongo"].remove()


@pytest.fixture
def mongo_uri(module_mongo):
    """The test file's embedded MongoDB, replaced first if it stopped answering: SecantusDB 0.7.0b3
    can wedge (a thread spinning inside WiredTiger under its global lock), and one wedge must not
    fail every test after it. CHAT_TEST_PYTHON_MONGODB_URI points the suite at a real mongod instead."""
    uri = os.environ.get("CHAT_TEST_PYTHON_MONGODB_URI")
    if uri:
        return uri
    if not answers(module_mongo["mongo"].uri):
        print("embedded MongoDB stopped answering; starting a fresh one", file=sys.stderr)
        module_mongo["mongo"].remove()
        module_mongo["mongo"] = Mongo()
    return module_mongo["mongo"].uri


@pytest.fixture
def server(mongo_uri):
    s = Server(mongo_uri)
    yield s
    s.stop()


@pytest.fixture
def own_mongo():
    m = Mongo()
    yield m
    m.remove()


def fixture_bytes(name):
    return (FIXTURES / name).read_bytes()
