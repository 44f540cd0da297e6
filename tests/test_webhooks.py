"""The webhook route end to end: deliveries signed by the official Svix library, posted over HTTP,
the result read back from MongoDB with pymongo."""
import concurrent.futures
import datetime
import http.client
import itertools
import json
import socket
import uuid

from svix.webhooks import Webhook

from conftest import WEBHOOK_SECRET, Server, fixture_bytes

PATH = "/api/webhooks/clerk"
USER_ID = "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef"


def signed_headers(body: bytes, msg_id=None, secret=WEBHOOK_SECRET, when=None):
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    when = when or datetime.datetime.now(tz=datetime.timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode("utf-8"))
    return {"svix-id": msg_id, "svix-timestamp": str(int(when.timestamp())), "svix-signature": signature,
            "content-type": "application/json"}


def post(server, body: bytes, headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", PATH, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def deliver(server, name_or_body, msg_id=None):
    body = fixture_bytes(name_or_body) if isinstance(name_or_body, str) else name_or_body
    return post(server, body, signed_headers(body, msg_id))


def profile(doc):
    keys = ["clerkId", "username", "email", "firstName", "lastName", "imageUrl", "isOnline", "deleted"]
    return {k: doc.get(k) for k in keys}


def test_created_user_has_every_field(server):
    status, answer = deliver(server, "user.created.json")
    assert (status, answer["status"]) == (200, "applied")
    user = server.db.users.find_one({"clerkId": USER_ID})
    assert user["username"] == "john_doe"
    assert user["email"] == "john@example.com"
    assert (user["firstName"], user["lastName"]) == ("John", "Doe")
    assert user["imageUrl"].startswith("https://img.clerk.com/")
    assert user["isOnline"] is False
    assert isinstance(user["lastSeen"], datetime.datetime)
    assert isinstance(user["createdAt"], datetime.datetime) and isinstance(user["updatedAt"], datetime.datetime)
    assert user["clerkUpdatedAt"] == 1763289000123


def test_update_changes_fields_and_delete_keeps_a_tombstone(server):
    deliver(server, "user.created.json")
    status, answer = deliver(server, "user.updated.json")
    assert (status, answer["status"]) == (200, "applied")
    user = server.db.users.find_one({"clerkId": USER_ID})
    assert (user["username"], user["email"], user["lastName"]) == ("johnny", "john.smith@example.org", "Doe-Smith")

    status, answer = deliver(server, "user.deleted.json")
    assert (status, answer["status"]) == (200, "applied")
    user = server.db.users.find_one({"clerkId": USER_ID})
    assert user["deleted"] is True
    assert isinstance(user["deletedAt"], datetime.datetime)
    for field in ["email", "username", "firstName", "lastName", "imageUrl"]:
        assert user[field] is None, field
    # A late update does not bring the user back.
    status, answer = deliver(server, "user.updated.json")
    assert (status, answer["status"]) == (200, "superseded")
    assert server.db.users.find_one({"clerkId": USER_ID})["email"] is None


def test_null_and_unicode_profiles(server):
    deliver(server, "user.created.minimal.json")
    deliver(server, "user.created.unicode.json")
    minimal = server.db.users.find_one({"clerkId": json.loads(fixture_bytes("user.created.minimal.json"))["data"]["id"]})
    assert minimal["email"] is None and minimal["username"] is None and minimal["firstName"] is None
    zoe = server.db.users.find_one({"username": "zoë"})
    assert zoe["lastName"] == "Ångström 🎉" and zoe["email"] == "zoe@example.com"


def test_every_order_of_created_updated_deleted_ends_in_the_same_state(mongo_uri):
    names = ["user.created.json", "user.updated.json", "user.deleted.json"]
    bodies = {n: fixture_bytes(n) for n in names}
    ids = {n: "msg_" + uuid.uuid4().hex for n in names}
    states = []
    server = Server(mongo_uri)
    try:
        for order in itertools.permutations(names):
            server.db.users.delete_many({})
            server.db.webhook_events.delete_many({})
            for n in order:
                status, _ = post(server, bodies[n], signed_headers(bodies[n], ids[n] + "".join(o[5] for o in order)))
                assert status == 200
            states.append((order, profile(server.db.users.find_one({"clerkId": USER_ID}))))
    finally:
        server.stop()
    right = states[0][1]
    assert right["deleted"] is True and right["email"] is None
    for order, state in states:
        assert state == right, order


def test_created_then_updated_in_either_order_keeps_the_newer(server):
    deliver(server, "user.updated.json")
    status, answer = deliver(server, "user.created.json")
    assert (status, answer["status"]) == (200, "superseded")
    assert server.db.users.find_one({"clerkId": USER_ID})["username"] == "johnny"


def test_ten_deliveries_of_one_svix_id_apply_once(server):
    body = fixture_bytes("user.created.json")
    msg_id = "msg_" + uuid.uuid4().hex
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: post(server, body, signed_headers(body, msg_id)), range(10)))
    assert all(status == 200 for status, _ in results), results
    outcomes = sorted(a["status"] for _, a in results)
    assert outcomes.count("applied") == 1, outcomes
    assert outcomes.count("duplicate") == 9, outcomes
    assert server.db.users.count_documents({}) == 1
    assert server.db.webhook_events.count_documents({"_id": msg_id}) == 1
    record = server.db.webhook_events.find_one({"_id": msg_id})
    assert record["expireAt"] - record["receivedAt"] >= datetime.timedelta(days=3)


def test_rejected_deliveries_leave_the_database_untouched(server):
    body = fixture_bytes("user.created.json")
    good = signed_headers(body)
    stale = signed_headers(body, when=datetime.datetime.now(tz=datetime.timezone.utc) - datetime.timedelta(seconds=301))
    future = signed_headers(body, when=datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(seconds=301))
    wrong_secret = signed_headers(body, secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
    cases = {
        "bad signature": dict(good, **{"svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}),
        "just v1,": dict(good, **{"svix-signature": "v1,"}),
        "stale": stale, "future": future, "wrong secret": wrong_secret,
        "missing id": {k: v for k, v in good.items() if k != "svix-id"},
        "missing timestamp": {k: v for k, v in good.items() if k != "svix-timestamp"},
        "missing signature": {k: v for k, v in good.items() if k != "svix-signature"},
    }
    for name, headers in cases.items():
        status, answer = post(server, body, headers)
        assert status == 400, name
        assert answer == {"error": "invalid webhook"}, name
    # One changed byte after signing.
    status, _ = post(server, body + b"\n", good)
    assert status == 400
    # Oversize: answered 413 from the headers, without waiting for (or buffering) the body.
    big = b'{"type":"user.created","data":{"id":"user_x"},"pad":"' + b"a" * (2 << 20) + b'"}'
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(big).items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(big)}\r\n{head}\r\n".encode() + big[:1000])
        answer = s.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert server.db.users.count_documents({}) == 0
    assert server.db.webhook_events.count_documents({}) == 0
    # The log names the reason, never the signature.
    log = "\n".join(server.lines)
    assert "g0hM9SsE" not in log and WEBHOOK_SECRET not in log


def test_unbranded_webhook_headers_are_accepted(server):
    body = fixture_bytes("user.created.json")
    headers = {k.replace("svix-", "webhook-"): v for k, v in signed_headers(body).items()}
    status, answer = post(server, body, headers)
    assert (status, answer["status"]) == (200, "applied")


def test_other_event_types_are_acknowledged_and_not_stored(server):
    body = json.dumps({"type": "email.created", "object": "event", "data": {"id": "ema_1"}, "timestamp": 1}).encode()
    status, answer = post(server, body, signed_headers(body))
    assert (status, answer["status"]) == (200, "ignored")
    status, answer = deliver(server, "session.ended.json")
    assert status == 200
    assert server.db.users.count_documents({}) == 0
    assert server.db.webhook_events.count_documents({}) == 0


def test_signed_body_that_is_not_a_clerk_event_is_400(server):
    body = b'{"hello": "world"}'
    status, _ = post(server, body, signed_headers(body))
    assert status == 400
    assert server.db.users.count_documents({}) == 0


def test_database_down_answers_503_records_nothing_and_the_retry_applies(own_mongo):
    server = Server(own_mongo.uri)
    try:
        body = fixture_bytes("user.created.json")
        msg_id = "msg_" + uuid.uuid4().hex
        assert post(server, b'{}', signed_headers(b'{}'))[0] == 400   # warm-up: the route works
        own_mongo.kill()
        status, _ = post(server, body, signed_headers(body, msg_id))
        assert status == 503
        own_mongo.start()
        # Svix retries with a new timestamp and signature, the same id.
        deadline = __import__("time").time() + 30
        while True:
            status, answer = post(server, body, signed_headers(body, msg_id))
            if status == 200 or __import__("time").time() > deadline:
                break
            __import__("time").sleep(0.5)
        assert (status, answer["status"]) == (200, "applied")
        assert server.db.users.count_documents({"clerkId": USER_ID}) == 1
        assert server.db.webhook_events.count_documents({"_id": msg_id}) == 1
    finally:
        server.stop()
