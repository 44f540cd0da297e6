"""What an anonymous client can make the server hold or write, over raw sockets: webhook bodies bounded
in time and in bytes in flight and refused from their headers, HTTP request limits, and a log that
bad requests cannot flood. Deliveries are signed by the official svix library."""
import datetime
import http.client
import json
import re
import socket
import threading
import time
import urllib.request

import pytest

from conftest import Server, fixture_bytes
from jwt_keys import Issuer
from test_webhooks import PATH, deliver, signed_headers

ISSUER = Issuer()


def head_bytes(headers, length, path=PATH):
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def open_body(server, length, headers=None, first=b"{"):
    """A connection that sent a webhook's headers and the start of its body, then nothing more."""
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(head_bytes(headers if headers is not None else signed_headers(b"{}"), length) + first)
    return s


class Streaming:
    """A body that keeps arriving at 80 KiB/s (never slow enough to be pushed out) without completing."""

    def __init__(self, server, length):
        self.socket = open_body(server, length)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(length,), daemon=True)
        self.thread.start()

    def _run(self, length):
        sent = 1
        while not self.stop.wait(0.25) and sent + 20480 < length - 1:
            try:
                self.socket.sendall(b" " * 20480)
            except OSError:
                return
            sent += 20480

    def close(self):
        self.stop.set()
        self.thread.join()
        self.socket.close()


def read_answer(s, timeout=10):
    """Everything the server sends until it closes (or `timeout` passes): (status or None, head, closed)."""
    s.settimeout(timeout)
    data = b""
    closed = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return (int(m.group(1)) if m else None), data, closed


def healthz(server):
    return urllib.request.urlopen(server.base + "/healthz", timeout=10).status


def test_a_webhook_body_that_trickles_is_answered_408_and_closed_at_its_deadline(mongo_uri):
    # lws' own body timeout restarts on every byte: a byte a second would hold the body forever.
    server = Server(mongo_uri, env={"WEBHOOK_BODY_TIMEOUT_SECONDS": "2"})
    try:
        s = open_body(server, 100_000)
        started = time.time()
        status, data, closed = None, b"", False
        s.settimeout(0.5)
        while time.time() - started < 20 and not closed:
            try:
                s.sendall(b" ")
                chunk = s.recv(65536)
                data += chunk
                closed = not chunk
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, "the trickling body was never cut off"
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert healthz(server) == 200
        s.close()
    finally:
        server.stop()


def test_bodies_over_the_in_flight_cap_get_503_with_retry_after_then_the_room_is_given_back(mongo_uri):
    server = Server(mongo_uri, env={"WEBHOOK_MAX_INFLIGHT_BYTES": "1048576", "WEBHOOK_BODY_TIMEOUT_SECONDS": "30"})
    try:
        held = Streaming(server, 700_000)
        time.sleep(0.5)   # admitted and being read
        refused = open_body(server, 700_000)
        status, data, closed = read_answer(refused)
        assert status == 503 and closed, data[:200]
        assert re.search(rb"\r\nretry-after: \d+\r\n", data, re.I), data[:300]
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]
        # A small delivery still fits beside the held body.
        assert deliver(server, "user.created.json")[0] == 200
        # The held body's reservation is returned when it goes: a second large one is admitted.
        held.close()
        time.sleep(0.5)
        body = json.dumps({"data": {}, "pad": "x" * 699_000}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        conn.request("POST", PATH, body=body, headers=signed_headers(body))
        assert conn.getresponse().status == 400   # read and verified: not a Clerk event, not 503
        conn.close()
        metrics = server.metrics()
        assert metrics[("chat_http_requests_total", (("route", "/api/webhooks/clerk"), ("status", "503")))] >= 1
    finally:
        server.stop()


def test_bodies_that_trickle_give_way_to_a_delivery_when_the_cap_is_full(mongo_uri):
    server = Server(mongo_uri, env={"WEBHOOK_MAX_INFLIGHT_BYTES": "1048576", "WEBHOOK_BODY_TIMEOUT_SECONDS": "60"})
    try:
        slow = [open_body(server, 524_288) for _ in range(2)]   # the cap is full, one byte each
        time.sleep(1.5)
        status, answer = deliver(server, "user.created.json")
        assert (status, answer["status"]) == (200, "applied")
        # As many as needed made room, no more: one was answered 408 and closed, the other is still read.
        answers = [read_answer(s, timeout=2) for s in slow]
        assert sorted(((a[0] or 0), a[2]) for a in answers) == [(0, False), (408, True)], answers
        for s in slow:
            s.close()
    finally:
        server.stop()


@pytest.mark.parametrize("length", ["-1048576", "+5", "1e3", "0x10"])
def test_a_content_length_that_is_not_a_byte_count_is_refused(mongo_uri, length):
    # A negative length once counted against the in-flight cap would have made room for more.
    server = Server(mongo_uri, env={"WEBHOOK_MAX_INFLIGHT_BYTES": "1048576"})
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(head_bytes(signed_headers(b"{}"), length))
        status, data, closed = read_answer(s, timeout=5)
        assert status in (400, 411) or (status is None and closed), data[:200]
        s.close()
        held = Streaming(server, 700_000)
        time.sleep(0.3)
        status, data, _ = read_answer(open_body(server, 700_000))
        assert status == 503, data[:200]   # the cap is whole
        held.close()
    finally:
        server.stop()


@pytest.mark.parametrize("case", ["no_headers", "no_signature", "stale", "future", "unbranded_without_id"])
def test_a_webhook_is_refused_from_its_headers_before_the_body_is_read(server, case):
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    fresh = signed_headers(b"{}")
    headers = {
        "no_headers": {},
        "no_signature": {k: v for k, v in fresh.items() if k != "svix-signature"},
        "stale": signed_headers(b"{}", when=now - datetime.timedelta(minutes=6)),
        "future": signed_headers(b"{}", when=now + datetime.timedelta(minutes=6)),
        "unbranded_without_id": {"webhook-timestamp": fresh["svix-timestamp"], "webhook-signature": fresh["svix-signature"]},
    }[case]
    # A 1 MB body is announced and none of it is sent: the answer cannot wait for it.
    s = open_body(server, 1_000_000, headers=headers, first=b"")
    status, data, closed = read_answer(s, timeout=5)
    assert status == 400 and closed, data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"error": "invalid webhook"}
    s.close()


def test_an_honest_delivery_and_healthz_are_answered_while_500_slow_bodies_are_held(server):
    slow = [open_body(server, 4096) for _ in range(500)]
    try:
        time.sleep(0.5)
        assert healthz(server) == 200
        status, answer = deliver(server, "user.created.json")
        assert (status, answer["status"]) == (200, "applied")
        assert server.db.users.count_documents({"username": "john_doe"}) == 1
    finally:
        for s in slow:
            s.close()


def raw_request(server, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", server.port))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_answer(s, timeout)
    s.close()
    return answer


def test_an_over_long_request_target_gets_414(server):
    status, data, closed = raw_request(server, b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and closed, data[:200]
    status, _, _ = raw_request(server, b"GET /healthz?" + b"q" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200   # a long query under the limit is served


def test_a_16_kib_bearer_token_fits_the_upgrade(mongo_uri):
    import asyncio
    import websockets
    server = Server(mongo_uri, env=ISSUER.env())
    try:
        uid = "user_bigtoken"
        short = ISSUER.token(uid)
        token = ISSUER.token(uid, extra={"pad": "p" * ((16 * 1024 - len(short)) * 3 // 4 - 20)})
        assert 15 * 1024 < len(token) <= 16 * 1024

        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["chat.v1"],
                                          additional_headers={"Authorization": "Bearer " + token}) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))
        welcome = asyncio.run(run())
        assert welcome["type"] == "welcome" and welcome["userId"] == uid
    finally:
        server.stop()


def test_oversized_headers_are_not_served_and_cannot_flood_the_log(server):
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    many_headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"
    for n in range(200):
        status, data, closed = raw_request(server, big_header if n % 2 else many_headers)
        assert status != 200 and closed, data[:200]
    # Each refusal is known to lws' log; 200 of them leave a handful of warning lines, no errors.
    time.sleep(0.5)
    lws_lines = [line for line in server.lines if "lws:" in line]
    assert 1 <= len(lws_lines) <= 12, lws_lines[:20]
    assert not [line for line in lws_lines if " error " in line or " critical " in line]
    assert healthz(server) == 200


def test_bad_webhooks_cannot_flood_the_log(server):
    for _ in range(200):
        s = open_body(server, 10, headers={}, first=b"")
        read_answer(s, timeout=5)
        s.close()
    rejected = [line for line in server.lines if "webhook rejected" in line]
    assert 1 <= len(rejected) <= 11, len(rejected)
    assert server.metrics()[("chat_webhook_deliveries_total", (("outcome", "rejected_missing_id"), ("type", "unknown")))] == 200
