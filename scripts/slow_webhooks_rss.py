#!/usr/bin/env python3
"""Server memory while an attacker holds slow webhook bodies (issue 10): each connection sends signed,
fresh Svix headers with `Content-Length: 1048576`, about 1,040,000 bytes of body, then one byte every
2 s; a connection the server answers (503 over the in-flight cap, 408 at the body deadline) is replaced
at once, so the attacker keeps N connections open all the time. Prints the server's RSS before and
during the attack and what the server answered. A measurement, not a test: no pass/fail.

    .venv/bin/python scripts/slow_webhooks_rss.py [--connections 2000] [--seconds 30]

Starts its own embedded MongoDB and chat-server (CHAT_SERVER_BIN, default .build/debug/chat-server)."""
import argparse
import collections
import os
import pathlib
import resource
import selectors
import socket
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import Mongo, Server  # noqa: E402
from test_webhooks import PATH, deliver, signed_headers  # noqa: E402

DECLARED = 1_048_576
UPFRONT = 1_040_000
CHUNK = b"x" * 65536


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Attacker:
    def __init__(self, port, count):
        self.port, self.count = port, count
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.answers = collections.Counter()
        self.opened = 0

    def open_one(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        h = signed_headers(b"{}")
        head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()
        self.conns[s] = {"pending": head, "sent": 0, "next_trickle": 0.0, "reply": b""}
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self.opened += 1

    def drop(self, s, reply):
        m = reply[:12].split(b" ")
        self.answers[m[1].decode() if len(m) > 1 and reply.startswith(b"HTTP/") else "closed without status"] += 1
        self.sel.unregister(s)
        s.close()
        del self.conns[s]

    def step(self, until):
        while len(self.conns) < self.count:
            self.open_one()
        for key, events in self.sel.select(timeout=max(0.0, min(0.2, until - time.time()))):
            s, c = key.fileobj, self.conns.get(key.fileobj)
            if c is None:
                continue
            if events & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    self.drop(s, c["reply"])
                    continue
                c["reply"] += data
            if events & selectors.EVENT_WRITE:
                try:
                    if c["pending"]:
                        n = s.send(c["pending"])
                        c["pending"] = c["pending"][n:]
                    elif c["sent"] < UPFRONT:
                        n = s.send(CHUNK[:min(len(CHUNK), UPFRONT - c["sent"])])
                        c["sent"] += n
                    elif time.time() >= c["next_trickle"]:
                        s.send(b"x")
                        c["next_trickle"] = time.time() + 2
                    else:
                        self.sel.modify(s, selectors.EVENT_READ)   # idle until the trickle timer
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    self.drop(s, c["reply"])
        now = time.time()
        for s, c in list(self.conns.items()):
            if not c["pending"] and c["sent"] >= UPFRONT and now >= c["next_trickle"]:
                self.sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    mongo = Mongo()
    server = Server(mongo.uri)
    try:
        time.sleep(1)
        base = rss_kib(server.proc.pid)
        print(f"server RSS before: {base / 1024:.1f} MiB")
        attacker = Attacker(server.port, args.connections)
        started = time.time()
        peak = base
        next_sample = started
        while time.time() - started < args.seconds:
            attacker.step(next_sample)
            if time.time() >= next_sample:
                rss = rss_kib(server.proc.pid)
                peak = max(peak, rss)
                print(f"t={time.time() - started:5.1f}s open={len(attacker.conns)} opened={attacker.opened} "
                      f"RSS={rss / 1024:.1f} MiB answers={dict(attacker.answers)}", flush=True)
                next_sample += 5
        t = time.time()
        health = urllib.request.urlopen(server.base + "/healthz", timeout=10).status
        print(f"during the attack: /healthz {health} in {time.time() - t:.2f} s")
        # An honest delivery, retried as Svix would (sooner): 503 is the answer while the cap is full.
        for attempt in range(1, 11):
            t = time.time()
            status, answer = deliver(server, "user.created.json", msg_id="msg_honest")
            print(f"  honest delivery attempt {attempt}: {status} {answer} in {time.time() - t:.2f} s")
            if status == 200:
                break
            deadline = time.time() + 1
            while time.time() < deadline:
                attacker.step(deadline)
        print(f"server RSS peak: {peak / 1024:.1f} MiB (before: {base / 1024:.1f} MiB) with "
              f"{args.connections} slow bodies held open for {args.seconds} s")
    finally:
        server.stop()
        mongo.remove()


if __name__ == "__main__":
    main()
