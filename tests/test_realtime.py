"""The WebSocket channel and presence, driven by the `websockets` library with tokens minted by PyJWT,
checked in MongoDB with pymongo. Several server processes share one database where the test needs it."""
import asyncio
import base64
import datetime
import json
import os
import signal
import socket
import struct
import threading
import time
import urllib.request
import uuid

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from conftest import Server, fixture_bytes
from jwt_keys import Issuer
from test_webhooks import post, signed_headers

ISSUER = Issuer()


def url(server):
    return f"ws://127.0.0.1:{server.port}/ws"


def user_id():
    return "user_" + uuid.uuid4().hex[:20]


async def connect(server, token, **kwargs):
    ws = await websockets.connect(url(server), subprotocols=["chat.v1"], **kwargs)
    await ws.send(json.dumps({"type": "auth", "id": "a1", "token": token}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 10))


async def close_code(ws, timeout=10):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def wait_for(predicate, timeout=10, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def ready(server):
    try:
        return urllib.request.urlopen(server.base + "/readyz", timeout=5).status == 200
    except OSError:
        return False


def online(server, uid):
    doc = server.db.users.find_one({"clerkId": uid})
    return doc and doc.get("isOnline")


@pytest.fixture
def rt(mongo_uri):
    s = Server(mongo_uri, env=ISSUER.env())
    yield s
    s.stop()


def test_valid_token_connects_and_the_user_is_online(rt):
    uid = user_id()

    async def run():
        ws, welcome = await connect(rt, ISSUER.token(uid, sid="sess_1"))
        assert welcome["type"] == "welcome" and welcome["userId"] == uid and welcome["sessionId"] == "sess_1"
        assert welcome["id"] == "a1" and welcome["protocol"] == "chat.v1"
        assert ws.subprotocol == "chat.v1"
        assert wait_for(lambda: online(rt, uid))
        user = rt.db.users.find_one({"clerkId": uid})
        assert user["isOnline"] is True and user["email"] is None   # minimal record before the webhook
        await ws.close()
    asyncio.run(run())


def test_authorization_header_and_no_subprotocol(rt):
    uid = user_id()

    async def run():
        async with websockets.connect(url(rt), additional_headers={"Authorization": "Bearer " + ISSUER.token(uid)}) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert welcome["type"] == "welcome" and welcome["userId"] == uid
    asyncio.run(run())


@pytest.mark.parametrize("case,code", [
    ("expired", 4004), ("not_yet_valid", 4003), ("wrong_key", 4003), ("alg_none", 4003),
    ("hs256_with_public_key", 4003), ("wrong_azp", 4003), ("garbage", 4003), ("no_sub", 4003),
])
def test_refused_tokens_close_with_the_documented_code_and_change_nothing(rt, case, code):
    uid = user_id()
    other = Issuer()
    tokens = {
        "expired": lambda: ISSUER.token(uid, ttl=-30, nbf_offset=-100, iat_offset=-90),
        "not_yet_valid": lambda: ISSUER.token(uid, nbf_offset=60),
        "wrong_key": lambda: other.token(uid),
        "alg_none": lambda: jwt.encode({"sub": uid, "exp": int(time.time()) + 60}, None, algorithm="none"),
        "hs256_with_public_key": lambda: hs256(uid, ISSUER.public_pem.encode()),
        "wrong_azp": lambda: ISSUER.token(uid, azp="https://evil.example"),
        "garbage": lambda: "not.a.jwt",
        "no_sub": lambda: ISSUER.token("", ttl=60),
    }

    async def run():
        ws = await websockets.connect(url(rt), subprotocols=["chat.v1"])
        await ws.send(json.dumps({"type": "auth", "id": "x", "token": tokens[case]()}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["type"] == "error" and frame["code"] in ("token_invalid", "token_expired"), frame
        assert await close_code(ws) == code
    asyncio.run(run())
    time.sleep(0.3)
    assert rt.db.users.count_documents({"clerkId": uid}) == 0
    assert rt.db.connections.count_documents({"userId": uid}) == 0


def hs256(sub, secret):
    # PyJWT refuses a PEM as an HMAC key, so sign by hand: the classic key-confusion attack.
    import hashlib
    import hmac

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "iat": now, "nbf": now - 10, "exp": now + 60}).encode())
    sig = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def test_allowed_azp_passes(rt):
    async def run():
        ws, welcome = await connect(rt, ISSUER.token(user_id(), azp="http://localhost:5173"))
        assert welcome["type"] == "welcome"
        await ws.close()
    asyncio.run(run())


def test_three_connections_offline_only_after_the_last(rt):
    uid = user_id()

    async def run():
        sockets = [(await connect(rt, ISSUER.token(uid)))[0] for _ in range(3)]
        assert wait_for(lambda: online(rt, uid))
        for ws in sockets[:2]:
            await ws.close()
            await asyncio.sleep(0.5)
            assert online(rt, uid), "closing one of three tabs must leave the user online"
        before = datetime.datetime.utcnow()
        await sockets[2].close()
        assert wait_for(lambda: not online(rt, uid))
        user = rt.db.users.find_one({"clerkId": uid})
        assert abs((user["lastSeen"] - before).total_seconds()) < 5
        assert rt.db.connections.count_documents({"userId": uid}) == 0
    asyncio.run(run())


def test_presence_subscription_sees_changes(rt):
    watcher, target = user_id(), user_id()

    async def run():
        ws, _ = await connect(rt, ISSUER.token(watcher))
        await ws.send(json.dumps({"type": "presence.subscribe", "id": "s", "userIds": [target]}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == "ok" and reply["id"] == "s"
        assert reply["data"]["users"] == [{"userId": target, "isOnline": False, "lastSeen": None}]
        other, _ = await connect(rt, ISSUER.token(target))
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert event == {"type": "presence", "userId": target, "isOnline": True, "lastSeen": event["lastSeen"]}
        await other.close()
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert event["type"] == "presence" and event["isOnline"] is False and event["lastSeen"]
        # Each presence write counts, so a late change-stream copy of the "online" is known to be older.
        assert rt.db.users.find_one({"clerkId": target})["presenceVersion"] == 2
        await ws.close()
    asyncio.run(run())


def raw_ws_client(port, token):
    """A client that completes the handshake, authenticates, then never reads again: its network is 'gone'."""
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    s.recv(4096)
    s.sendall(masked_text({"type": "auth", "token": token}))
    return s


def masked_text(obj):
    """One client text frame (masked, as RFC 6455 requires of clients) holding `obj` as JSON."""
    payload = json.dumps(obj).encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)) if len(payload) > 125 else bytes([0x81, 0x80 | len(payload)])
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def flood_until_closed(s):
    """Sends 60 pings (past a rate limit of 5/s with a burst of 5) and reads until the server's close
    frame; returns what was read."""
    s.sendall(b"".join(masked_text({"type": "ping"}) for _ in range(60)))
    s.settimeout(10)
    received = b""
    while b"\x88" not in received:
        chunk = s.recv(65536)
        assert chunk, "connection closed without a close frame"
        received += chunk
    return received


def test_the_server_waits_for_the_close_ack_while_the_client_still_sends(mongo_uri):
    """After its close frame the server keeps the socket until the client's close (frames that arrive
    meanwhile are dropped): closing at once would answer them with a TCP reset, which can discard the
    close code before a busy client reads it."""
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_RATE_LIMIT": "5", "WS_RATE_BURST": "5"})
    try:
        s = raw_ws_client(server.port, ISSUER.token(user_id()))
        received = flood_until_closed(s)
        assert received[received.rindex(b"\x88") + 2:][:2] == struct.pack(">H", 4008)
        s.sendall(b"".join(masked_text({"type": "ping"}) for _ in range(60)))   # still sending
        s.settimeout(1)
        with pytest.raises(socket.timeout):   # no EOF: the server waits for the ack
            s.recv(65536)
        mask = os.urandom(4)
        s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(struct.pack(">H", 4008))))
        s.settimeout(2)
        assert s.recv(65536) == b""   # the ack ends it at once
        s.close()
    finally:
        server.stop()


def test_the_wait_for_the_close_ack_is_bounded(mongo_uri):
    """A client that neither acks the server's close frame nor sends anything is dropped about 3 s
    after the close (chat_lws_send_close's bound), long before the idle rule's hangup (20 s)."""
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_RATE_LIMIT": "5", "WS_RATE_BURST": "5"})
    try:
        s = raw_ws_client(server.port, ISSUER.token(user_id()))
        flood_until_closed(s)
        closed_at = time.monotonic()
        s.settimeout(12)
        while True:   # what else was queued, then EOF (no ack from us)
            try:
                if s.recv(65536) == b"":
                    break
            except ConnectionResetError:
                break
        assert time.monotonic() - closed_at < 12
        s.close()
    finally:
        server.stop()


def test_client_that_stops_answering_pings_goes_offline(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_PING_INTERVAL_SECONDS": "1", "WS_PING_TIMEOUT_SECONDS": "3"})
    try:
        uid = user_id()
        s = raw_ws_client(server.port, ISSUER.token(uid))
        assert wait_for(lambda: online(server, uid))
        started = time.time()
        assert wait_for(lambda: not online(server, uid), timeout=15)
        assert time.time() - started < 10
        s.close()
    finally:
        server.stop()


def test_an_idle_client_that_answers_pings_stays_connected(mongo_uri):
    # The server's PING carries a byte: lws 4.1.6 does not report an empty PONG, so every idle
    # client that answered an empty PING was dropped at the hang-up time all the same.
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_PING_INTERVAL_SECONDS": "1", "WS_PING_TIMEOUT_SECONDS": "3"})
    try:
        uid = user_id()

        async def run():
            ws, welcome = await connect(server, ISSUER.token(uid))   # websockets answers PINGs by itself
            assert welcome["type"] == "welcome"
            await asyncio.sleep(7)                                    # more than twice the hang-up time
            await ws.send(json.dumps({"type": "ping", "id": "p"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ok"
            assert online(server, uid)
            await ws.close()
        asyncio.run(run())
    finally:
        server.stop()

def test_two_instances_count_presence_as_one(mongo_uri):
    a = Server(mongo_uri, env=ISSUER.env())
    b = Server(mongo_uri, env=ISSUER.env(), db_name=a.db_name)
    try:
        uid = user_id()

        async def run():
            on_a, _ = await connect(a, ISSUER.token(uid))
            on_b, _ = await connect(b, ISSUER.token(uid))
            assert wait_for(lambda: online(a, uid))
            assert a.db.connections.count_documents({"userId": uid}) == 2
            assert len(set(d["instanceId"] for d in a.db.connections.find({"userId": uid}))) == 2
            await on_a.close()
            await asyncio.sleep(1)
            assert online(a, uid), "still connected on the other instance"
            await on_b.close()
            assert wait_for(lambda: not online(a, uid))
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()


def test_kill_9_of_an_instance_marks_its_users_offline(mongo_uri):
    env = {**ISSUER.env(), "PRESENCE_INSTANCE_TIMEOUT_SECONDS": "4", "PRESENCE_HEARTBEAT_SECONDS": "1"}
    a = Server(mongo_uri, env=env)
    b = Server(mongo_uri, env=env, db_name=a.db_name)
    try:
        uid, watcher = user_id(), user_id()

        async def run():
            ws_b, _ = await connect(b, ISSUER.token(watcher))
            await ws_b.send(json.dumps({"type": "presence.subscribe", "id": "s", "userIds": [uid]}))
            await asyncio.wait_for(ws_b.recv(), 10)
            ws_a, _ = await connect(a, ISSUER.token(uid))
            assert wait_for(lambda: online(a, uid))
            event = json.loads(await asyncio.wait_for(ws_b.recv(), 10))   # seen across instances
            assert event["userId"] == uid and event["isOnline"] is True
            a.proc.send_signal(signal.SIGKILL)
            killed = datetime.datetime.utcnow()
            a.proc.wait()
            assert wait_for(lambda: not online(b, uid), timeout=20)
            user = b.db.users.find_one({"clerkId": uid})
            assert abs((user["lastSeen"] - killed).total_seconds()) < 3, "lastSeen near the dead instance's last heartbeat"
            # The sweep marks the user offline first, then removes the dead instance's records.
            assert wait_for(lambda: b.db.connections.count_documents({"userId": uid}) == 0)
            event = json.loads(await asyncio.wait_for(ws_b.recv(), 15))
            assert event["userId"] == uid and event["isOnline"] is False
            await ws_b.close()
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()


def test_user_deleted_webhook_closes_that_users_sockets_on_every_instance(mongo_uri):
    a = Server(mongo_uri, env=ISSUER.env())
    b = Server(mongo_uri, env=ISSUER.env(), db_name=a.db_name)
    uid = json.loads(fixture_bytes("user.deleted.json"))["data"]["id"]
    try:
        async def run():
            on_a, _ = await connect(a, ISSUER.token(uid))
            on_b, _ = await connect(b, ISSUER.token(uid))
            bystander, _ = await connect(a, ISSUER.token(user_id()))
            body = fixture_bytes("user.deleted.json")
            assert post(a, body, signed_headers(body))[0] == 200
            assert await close_code(on_a) == 4006
            assert await close_code(on_b) == 4006
            await bystander.send(json.dumps({"type": "ping", "id": "p"}))
            assert json.loads(await asyncio.wait_for(bystander.recv(), 5))["type"] == "ok"
            # A deleted user cannot connect again.
            ws = await websockets.connect(url(a))
            await ws.send(json.dumps({"type": "auth", "token": ISSUER.token(uid)}))
            assert await close_code(ws) == 4006
        asyncio.run(run())
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("kind", ["session.ended", "session.removed", "session.revoked"])
def test_session_ended_webhook_closes_that_sessions_sockets(rt, kind):
    event = json.loads(fixture_bytes("session.ended.json"))
    event["type"] = kind
    uid, sid = event["data"]["user_id"], event["data"]["id"]

    async def run():
        ended, _ = await connect(rt, ISSUER.token(uid, sid=sid))
        other_session, _ = await connect(rt, ISSUER.token(uid, sid="sess_other"))
        body = json.dumps(event).encode()
        assert post(rt, body, signed_headers(body))[0] == 200
        assert await close_code(ended) == 4005
        await other_session.send(json.dumps({"type": "ping", "id": "p"}))
        assert json.loads(await asyncio.wait_for(other_session.recv(), 5))["type"] == "ok"
        await other_session.close()
    asyncio.run(run())


def test_refresh_takes_a_fresh_token_and_a_refused_one_keeps_the_connection(rt):
    uid = user_id()

    async def run():
        ws, welcome = await connect(rt, ISSUER.token(uid, ttl=30))
        assert welcome["type"] == "welcome"

        async def refresh(token, rid):
            await ws.send(json.dumps({"type": "refresh", "id": rid, "token": token}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

        answer = await refresh(ISSUER.token(uid, ttl=600), "r1")
        assert (answer["type"], answer["id"]) == ("ok", "r1"), answer
        expires = datetime.datetime.fromisoformat(answer["data"]["expiresAt"].replace("Z", "+00:00"))
        left = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        assert 500 < left <= 600, left
        for rid, token, code in [
            ("r2", ISSUER.token(uid, ttl=-30, nbf_offset=-100, iat_offset=-90), "token_expired"),
            ("r3", Issuer().token(uid), "token_invalid"),        # another key
            ("r4", ISSUER.token(uid, azp="https://evil.example"), "token_invalid"),
            ("r5", ISSUER.token(user_id()), "wrong_user"),
        ]:
            answer = await refresh(token, rid)
            assert (answer["type"], answer["id"], answer["code"]) == ("error", rid, code), answer
        await ws.send(json.dumps({"type": "ping", "id": "p"}))   # still open, still this user
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ok"
        assert online(rt, uid) and rt.db.connections.count_documents({"userId": uid}) == 1
        await ws.close()
    asyncio.run(run())


def test_users_query_pages_through_everyone_and_filters_the_online(rt):
    watcher, users = user_id(), sorted(user_id() for _ in range(5))

    async def run():
        ws, _ = await connect(rt, ISSUER.token(watcher))
        sockets = [(await connect(rt, ISSUER.token(u)))[0] for u in users]
        for gone in sockets[:3]:
            await gone.close()
        assert wait_for(lambda: rt.db.users.count_documents({"isOnline": True}) == 3)

        async def query(rid, **fields):
            await ws.send(json.dumps({"type": "users.query", "id": rid, **fields}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["type"] == "ok", answer
            return answer["data"]

        seen, after, pages = [], None, 0
        while True:
            page = await query(f"q{pages}", limit=2, **({"after": after} if after else {}))
            seen += [u["userId"] for u in page["users"]]
            pages += 1
            after = page["next"]
            if after is None:
                break
        assert seen == sorted(users + [watcher]) and pages >= 3
        online_now = await query("on", online=True)
        assert sorted(u["userId"] for u in online_now["users"]) == sorted(users[3:] + [watcher])
        assert all(u["isOnline"] for u in online_now["users"])
        for s in sockets[3:]:
            await s.close()
        await ws.close()
    asyncio.run(run())


def test_production_logs_only_json_lines(mongo_uri):
    s = Server(mongo_uri, env={**ISSUER.env(), "NODE_ENV": "production"})
    try:
        async def run():
            ws, _ = await connect(s, ISSUER.token(user_id()))
            await ws.close()
        asyncio.run(run())
    finally:
        s.stop()
    records = [json.loads(line) for line in s.lines]   # every line, stdout and stderr, parses
    assert all({"time", "level", "msg"} <= set(r) for r in records), records
    messages = [r["msg"] for r in records]
    assert "✅ MongoDB connected successfully" in messages and "Server running" in messages, messages
    assert messages[-1] == "stopped"


def test_metrics_count_connections_webhooks_and_database_work(rt):
    uid = user_id()

    async def run():
        ws, _ = await connect(rt, ISSUER.token(uid))
        other, _ = await connect(rt, ISSUER.token(user_id()))
        assert rt.metrics()[("chat_ws_connections", ())] == 2
        await other.close()
        assert wait_for(lambda: rt.metrics()[("chat_ws_connections", ())] == 1)
        body = fixture_bytes("user.created.json")
        assert post(rt, body, signed_headers(body))[0] == 200
        assert post(rt, body, signed_headers(body))[0] == 200   # another delivery id, same event: a duplicate
        await ws.close()
    asyncio.run(run())
    m = rt.metrics()
    assert m[("chat_ws_connections", ())] == 0
    deliveries = {dict(labels)["outcome"]: v for (name, labels), v in m.items()
                  if name == "chat_webhook_deliveries_total" and dict(labels)["type"] == "user.created"}
    assert sum(deliveries.values()) == 2 and deliveries.get("applied") == 1, deliveries
    assert m[("chat_db_operation_duration_seconds_count", (("operation", "presence_connect"),))] >= 2
    assert ("chat_db_queue_depth", ()) in m


def test_webhook_after_first_connection_fills_the_profile_and_keeps_presence(rt):
    uid = json.loads(fixture_bytes("user.created.json"))["data"]["id"]

    async def run():
        ws, _ = await connect(rt, ISSUER.token(uid))
        assert wait_for(lambda: online(rt, uid))
        body = fixture_bytes("user.created.json")
        assert post(rt, body, signed_headers(body))[1]["status"] == "applied"
        user = rt.db.users.find_one({"clerkId": uid})
        assert user["username"] == "john_doe" and user["email"] == "john@example.com"
        assert user["isOnline"] is True
        assert rt.db.users.count_documents({"clerkId": uid}) == 1
        await ws.close()
    asyncio.run(run())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_closes_sockets_with_the_reconnect_code_and_updates_presence(mongo_uri, sig):
    server = Server(mongo_uri, env=ISSUER.env())
    uid = user_id()

    async def run():
        ws, _ = await connect(server, ISSUER.token(uid))
        assert wait_for(lambda: online(server, uid))
        server.proc.send_signal(sig)
        assert await close_code(ws) == 1012
    asyncio.run(run())
    assert server.proc.wait(15) == 0
    assert not online(server, uid)
    assert server.db.connections.count_documents({}) == 0
    assert server.db.instances.count_documents({}) == 0
    server.client.close()


def test_a_message_in_fragments_is_read_as_one(rt):
    async def run():
        ws, _ = await connect(rt, ISSUER.token(user_id()))
        watched = [user_id() for _ in range(300)]
        frame = json.dumps({"type": "presence.subscribe", "id": "frag", "userIds": watched})   # ~9 KB
        await ws.send([frame[:10], frame[10:4000], frame[4000:]])   # websockets sends a list as continuation frames
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (reply["type"], reply["id"]) == ("ok", "frag")
        assert [u["userId"] for u in reply["data"]["users"]] == watched
        await ws.close()
    asyncio.run(run())


def test_multibyte_text_split_across_receive_pieces_arrives_intact(rt):
    # The server reads WebSocket frames in 2 KiB pieces (LwsServer: ws_rx_buffer): a message of
    # nearly 8,000 bytes of raw UTF-8 has characters of 2-4 bytes cut at the pieces' edges.
    text = "aé€😀" * 790
    assert len(text.encode()) == 7900

    async def run():
        alice, bob = user_id(), user_id()
        a, _ = await connect(rt, ISSUER.token(alice))
        b, _ = await connect(rt, ISSUER.token(bob))

        async def call(ws, **frame):
            await ws.send(json.dumps(frame, ensure_ascii=False))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply.get("id") == frame["id"]:
                    return reply
        cid = (await call(a, type="conversation.direct", id="d", userId=bob))["data"]["conversation"]["conversationId"]
        assert (await call(a, type="message.send", id="s", conversationId=cid, clientId="c1", text=text))["type"] == "ok"
        while True:
            event = json.loads(await asyncio.wait_for(b.recv(), 10))
            if event["type"] == "message":
                break
        assert event["message"]["text"] == text
        await a.close()
        await b.close()
    asyncio.run(run())


def test_origin_check_and_path(rt):
    async def run():
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            await websockets.connect(url(rt), origin="https://evil.example")
        ok = await websockets.connect(url(rt), origin="http://localhost:5173")
        await ok.close()
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            await websockets.connect(f"ws://127.0.0.1:{rt.port}/other")
    asyncio.run(run())
    # What a browser sees: an HTTP 403, not a dropped connection.
    for path, origin in [("/ws", "https://evil.example"), ("/other", "http://localhost:5173")]:
        with socket.create_connection(("127.0.0.1", rt.port), timeout=5) as s:
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: {origin}\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            assert b" 403 " in s.recv(1024).split(b"\r\n")[0]


def test_auth_timeout_closes_4001(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_AUTH_TIMEOUT_SECONDS": "1"})
    try:
        async def run():
            ws = await websockets.connect(url(server))
            assert await close_code(ws) == 4001
        asyncio.run(run())
    finally:
        server.stop()


def test_protocol_hygiene_errors_keep_the_connection(rt):
    async def run():
        ws, _ = await connect(rt, ISSUER.token(user_id()))
        await ws.send("{nope")
        assert json.loads(await ws.recv())["code"] == "bad_json"
        await ws.send(json.dumps({"type": "teleport", "id": "t"}))
        frame = json.loads(await ws.recv())
        assert frame["code"] == "unknown_type" and frame["id"] == "t"
        await ws.send(json.dumps({"type": "presence.subscribe", "id": "u", "userIds": "bob"}))
        assert json.loads(await ws.recv())["code"] == "bad_request"
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert json.loads(await ws.recv())["type"] == "ok"
        await ws.send("x" * (65 * 1024))
        assert await close_code(ws) == 1009
    asyncio.run(run())


def test_rate_limit(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_RATE_LIMIT": "5", "WS_RATE_BURST": "5"})
    try:
        async def run():
            ws, _ = await connect(server, ISSUER.token(user_id()))
            for i in range(8):
                await ws.send(json.dumps({"type": "ping", "id": str(i)}))
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(8)]
            assert any(f.get("code") == "rate_limited" for f in frames)
            # Far beyond the burst: closed.
            codes = []
            try:
                for i in range(20):
                    await ws.send(json.dumps({"type": "ping"}))
            except ConnectionClosed as closed:
                codes.append(closed.rcvd.code if closed.rcvd else None)
            codes.append(await close_code(ws))
            assert 4008 in codes, codes
        asyncio.run(run())
    finally:
        server.stop()


def test_a_reader_that_stops_reading_is_closed_and_nobody_else_waits(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "WS_RATE_LIMIT": "10000", "WS_RATE_BURST": "10000"})
    alice, bob = user_id(), user_id()
    try:
        async def run():
            a, _ = await connect(server, ISSUER.token(alice))
            # Bob's client stops reading (websockets pauses the transport once one frame waits): what
            # the server sends him fills the sockets' buffers, then piles up in its outbound queue.
            b, _ = await connect(server, ISSUER.token(bob), max_queue=1)

            async def call(ws, **frame):
                await ws.send(json.dumps(frame))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if reply.get("id") == frame["id"]:
                        return reply
            cid = (await call(a, type="conversation.direct", id="d", userId=bob))["data"]["conversation"]["conversationId"]
            for i in range(40):
                assert (await call(a, type="message.send", id=f"s{i}", conversationId=cid, clientId=f"c{i}",
                                   text=f"{i} " + "x" * 7000))["type"] == "ok"
            # Each answer is a page of at most 256 KiB: one never closes a connection by itself (the
            # limit is about what is left unread), but 40 left unread (10 MiB: more than the kernel's
            # socket buffers, up to 4 MiB here, and the 1 MiB outbound queue) do.
            for i in range(40):
                await b.send(json.dumps({"type": "history", "id": f"h{i}", "conversationId": cid, "limit": 200}))
            assert wait_for(lambda: server.metrics()[("chat_ws_slow_consumer_closed_total", ())] == 1, timeout=20)
            # Alice is not held up by bob's full queue.
            assert (await call(a, type="ping", id="p"))["type"] == "ok"
            assert (await call(a, type="message.send", id="last", conversationId=cid, clientId="last", text="still here"))["type"] == "ok"
            assert await close_code(b, timeout=20) == 4009   # bob reads again: what was queued, then the close
            await a.close()
        asyncio.run(run())
    finally:
        server.stop()


def test_sigterm_answers_the_webhook_it_is_applying(own_mongo):
    server = Server(own_mongo.uri, env=ISSUER.env())
    try:
        assert wait_for(lambda: ready(server))
        body = fixture_bytes("user.created.json")
        answers = []
        os.kill(own_mongo.proc.pid, signal.SIGSTOP)   # the delivery's database write hangs...
        try:
            poster = threading.Thread(target=lambda: answers.append(post(server, body, signed_headers(body))))
            poster.start()
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)     # ...while the server is told to stop
            time.sleep(1.5)
        finally:
            os.kill(own_mongo.proc.pid, signal.SIGCONT)
        poster.join(20)
        assert answers and answers[0][0] == 200, (answers, server.lines[-20:])
        assert server.proc.wait(15) == 0
        assert server.db.users.count_documents({"clerkId": json.loads(body)["data"]["id"]}) == 1
    finally:
        os.kill(own_mongo.proc.pid, signal.SIGCONT)
        server.stop()


def test_disconnect_while_the_database_is_away_is_applied_when_it_returns(own_mongo):
    server = Server(own_mongo.uri, env={**ISSUER.env(), "PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_INSTANCE_TIMEOUT_SECONDS": "60"})
    uid = user_id()
    try:
        async def run():
            ws, _ = await connect(server, ISSUER.token(uid))
            assert wait_for(lambda: online(server, uid))
            own_mongo.kill()
            await ws.close()
            # Longer than server selection (5 s): the disconnect fails rather than waits.
            deadline = time.time() + 20
            while not any("will retry" in line for line in server.lines) and time.time() < deadline:
                await asyncio.sleep(0.2)
        asyncio.run(run())
        own_mongo.start()
        assert wait_for(lambda: not online(server, uid), timeout=30), "user stayed online after the database came back"
        assert server.db.connections.count_documents({"userId": uid}) == 0
        assert any("will retry" in line for line in server.lines)   # the failure path was taken
    finally:
        server.stop()
