"""The protocol/ folder is the contract of the WebSocket channel: its JSON Schemas, examples and
AsyncAPI document must agree with each other, with the Swift sources' codes, and with what a running
chat-server actually sends (driven with `websockets`, tokens minted with PyJWT)."""
import asyncio
import json
import pathlib
import re
import time
import urllib.parse

import jsonschema
import jwt
import pytest
import websockets
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from websockets.exceptions import ConnectionClosed

from conftest import Server

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocol"
SCHEMAS = PROTOCOL / "schemas"
EXAMPLES = PROTOCOL / "examples"
CODES_SWIFT = ROOT / "Sources" / "ChatDomain" / "Protocol" / "ProtocolCodes.swift"

CLIENT_TYPES = ["auth", "refresh", "ping", "presence.subscribe", "presence.unsubscribe", "users.query"]
SERVER_TYPES = ["welcome", "ok", "error", "presence"]
MAX_MESSAGE = 64 * 1024


# --- schemas and examples ------------------------------------------------------------------------

def load_json(path):
    return json.loads(path.read_text())


SCHEMA_DOCS = {p.name: load_json(p) for p in sorted(SCHEMAS.glob("*.json"))}
REGISTRY = Registry().with_resources(
    (name, Resource.from_contents(doc, default_specification=DRAFT202012)) for name, doc in SCHEMA_DOCS.items())
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def validator(name):
    return jsonschema.Draft202012Validator(SCHEMA_DOCS[name], registry=REGISTRY,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


CLIENT_FRAME = validator("client-frame.json")
SERVER_FRAME = validator("server-frame.json")


def examples(prefix):
    for path in EXAMPLE_FILES:
        if path.name.startswith(prefix):
            yield path, load_json(path)


def swift_cases(enum):
    """(name, raw value) of each case of a Swift enum in ProtocolCodes.swift."""
    text = CODES_SWIFT.read_text()
    body = re.search(r"enum " + enum + r"\b[^{]*\{(.*?)\n\}", text, re.S).group(1)
    cases = []
    for name, raw in re.findall(r"^\s*case (\w+)(?:\s*=\s*([^\s/]+))?", body, re.M):
        cases.append((name, raw.strip('"') if raw else name))
    return cases


def test_schema_files_are_draft_2020_12_with_file_name_ids():
    expected = {f"client.{t}.json" for t in CLIENT_TYPES} | {f"server.{t}.json" for t in SERVER_TYPES} \
        | {"client-frame.json", "server-frame.json", "defs.json"}
    assert set(SCHEMA_DOCS) == expected
    for name, doc in SCHEMA_DOCS.items():
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert doc["$id"] == name
        jsonschema.Draft202012Validator.check_schema(doc)


def test_unions_list_every_type_once():
    for union, direction, types in [("client-frame.json", "client", CLIENT_TYPES), ("server-frame.json", "server", SERVER_TYPES)]:
        refs = [entry["$ref"] for entry in SCHEMA_DOCS[union]["oneOf"]]
        assert sorted(refs) == sorted(f"{direction}.{t}.json" for t in types)
        for t in types:
            assert SCHEMA_DOCS[f"{direction}.{t}.json"]["properties"]["type"] == {"const": t}


def test_client_frames_allow_unknown_fields_and_server_frames_do_not():
    for t in CLIENT_TYPES:
        assert SCHEMA_DOCS[f"client.{t}.json"].get("additionalProperties", True) is not False
    for t in SERVER_TYPES:
        assert SCHEMA_DOCS[f"server.{t}.json"]["additionalProperties"] is False
    CLIENT_FRAME.validate({"type": "ping", "id": "1", "extra": [1, 2]})
    with pytest.raises(jsonschema.ValidationError):
        SERVER_FRAME.validate({"type": "ok", "data": {}, "extra": 1})
    with pytest.raises(jsonschema.ValidationError):
        CLIENT_FRAME.validate({"type": "no.such.type"})
    with pytest.raises(jsonschema.ValidationError):
        CLIENT_FRAME.validate({"type": "users.query", "limit": 201})
    with pytest.raises(jsonschema.ValidationError):
        CLIENT_FRAME.validate({"type": "ping", "id": None})


def test_every_message_type_has_an_example():
    named = {load_json(p)["schema"] for p in EXAMPLE_FILES}
    assert named == {f"client.{t}.json" for t in CLIENT_TYPES} | {f"server.{t}.json" for t in SERVER_TYPES}
    for path in EXAMPLE_FILES:
        example = load_json(path)
        assert path.name.startswith(example["schema"][:-len(".json")] + "."), f"{path.name} is not named after its schema"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_against_its_schema_and_the_union(path):
    example = load_json(path)
    assert set(example) == {"schema", "frame"}
    validator(example["schema"]).validate(example["frame"])
    union = CLIENT_FRAME if example["schema"].startswith("client.") else SERVER_FRAME
    union.validate(example["frame"])


def test_error_codes_match_the_swift_enum_and_the_readme():
    codes = [raw for _, raw in swift_cases("ErrorCode")]
    assert len(codes) >= 10
    assert sorted(SCHEMA_DOCS["server.error.json"]["properties"]["code"]["enum"]) == sorted(codes)
    readme = (PROTOCOL / "README.md").read_text()
    for code in codes:
        assert f"`{code}`" in readme, code


def test_every_type_the_server_decodes_is_documented_or_listed_as_not_covered():
    swift = (ROOT / "Sources" / "ChatDomain" / "Protocol" / "ClientFrame.swift").read_text()
    decoded = re.findall(r'^\s*case "([a-z.]+)":', swift, re.M)
    assert set(CLIENT_TYPES) <= set(decoded)
    readme = (PROTOCOL / "README.md").read_text()
    not_covered = readme.split("## Not covered yet", 1)[1].split("\n## ", 1)[0]
    for t in set(decoded) - set(CLIENT_TYPES):
        assert f"`{t}`" in not_covered, f"{t}: decoded by the server but neither documented nor listed as not covered"


def test_close_codes_are_all_in_the_readme():
    codes = [raw for _, raw in swift_cases("ChannelCloseCode")]
    assert "4001" in codes and "1009" in codes
    readme = (PROTOCOL / "README.md").read_text()
    section = readme.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    for code in codes:
        assert re.search(r"\b" + code + r"\b", section), code


# --- the AsyncAPI document -----------------------------------------------------------------------

ASYNCAPI = PROTOCOL / "asyncapi.yaml"


def all_refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def pointer(doc, fragment):
    for part in [p for p in fragment.split("/") if p]:
        part = urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def test_asyncapi_parses_and_every_ref_resolves():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    assert str(doc["asyncapi"]).startswith("3.")
    assert len(doc["servers"]) == 1
    assert [c["address"] for c in doc["channels"].values()] == ["/ws"]
    actions = {op["action"] for op in doc["operations"].values()}
    assert actions == {"send", "receive"}
    refs = list(all_refs(doc))
    assert refs
    for ref in refs:
        file_part, _, fragment = ref.partition("#")
        if file_part:
            target = (ASYNCAPI.parent / file_part).resolve()
            assert target.is_file(), f"{ref}: no such file"
            target_doc = load_json(target) if target.suffix == ".json" else yaml.safe_load(target.read_text())
        else:
            target_doc = doc
        try:
            pointer(target_doc, fragment)
        except (KeyError, IndexError, ValueError):
            pytest.fail(f"{ref}: {fragment} not found")


def test_asyncapi_messages_cover_every_schema():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    payloads = {pathlib.Path(m["payload"]["$ref"]).name for m in doc["components"]["messages"].values()}
    assert payloads == {f"client.{t}.json" for t in CLIENT_TYPES} | {f"server.{t}.json" for t in SERVER_TYPES}
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == set(CLIENT_TYPES) | set(SERVER_TYPES)


# --- against a running server --------------------------------------------------------------------

class Keys:
    """An RSA key pair (cryptography) and RS256 session tokens shaped like Clerk's (PyJWT)."""

    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def token(self, sub, sid="sess_protocol", ttl=60, **claims):
        now = int(time.time())
        payload = {"sub": sub, "sid": sid, "iat": now, "nbf": now - 5, "exp": now + ttl, **claims}
        return jwt.encode(payload, self.private, algorithm="RS256")


@pytest.fixture(scope="module")
def keys():
    return Keys()


def start(mongo_uri, keys, **env):
    return Server(mongo_uri, env={"CLERK_JWT_KEY": keys.public_pem, **env})


@pytest.fixture
def live(mongo_uri, keys):
    s = start(mongo_uri, keys)
    yield s
    s.stop()


def ws_url(server):
    return f"ws://127.0.0.1:{server.port}/ws"


async def open_ws(server, **kwargs):
    ws = await websockets.connect(ws_url(server), subprotocols=["chat.v1"], **kwargs)
    assert ws.subprotocol == "chat.v1"
    return ws


async def recv(ws, timeout=10):
    """The next server frame, checked against server-frame.json."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    SERVER_FRAME.validate(frame)
    return frame


async def reply(ws, timeout=10):
    """The next frame that is not a pushed presence event (those are validated, then skipped)."""
    while True:
        frame = await recv(ws, timeout)
        if frame["type"] != "presence":
            return frame


async def close_code(ws, timeout=10):
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            SERVER_FRAME.validate(frame)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def with_token(frame, token):
    return {k: (token if v == "<token>" else v) for k, v in frame.items()}


def test_every_client_example_gets_valid_replies(live, keys):
    me = "user_2aXw9kP1mQz7Lr3tYb"
    client = dict(examples("client."))
    auth = client.pop(EXAMPLES / "client.auth.json")

    async def run():
        ws = await open_ws(live)
        await ws.send(json.dumps(with_token(auth["frame"], keys.token(me))))
        welcome = await reply(ws)
        assert welcome["type"] == "welcome" and welcome["id"] == auth["frame"]["id"] and welcome["userId"] == me
        # Give the directory something to return for the users.query example ("ada", online).
        live.db.users.update_one({"clerkId": me}, {"$set": {
            "username": "ada", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com",
            "imageUrl": "https://img.example.com/ada.png"}})
        seen = set()
        for path, example in sorted(client.items()):
            frame = with_token(example["frame"], keys.token(me))
            await ws.send(json.dumps(frame))
            answer = await reply(ws)
            assert answer["type"] == "ok", (path.name, answer)
            assert answer.get("id") == frame.get("id"), path.name
            seen.add(frame["type"])
            if frame["type"] == "users.query" and frame.get("search") == "ada":
                assert [u["userId"] for u in answer["data"]["users"]] == [me]
                assert answer["data"]["users"][0]["username"] == "ada"
            if frame["type"] == "presence.subscribe":
                assert [u["userId"] for u in answer["data"]["users"]] == frame["userIds"]
        assert seen == set(CLIENT_TYPES) - {"auth"}
        await ws.close()

    asyncio.run(run())


def test_authorization_header_gets_a_welcome_without_id(live, keys):
    async def run():
        ws = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token("user_header")})
        welcome = await recv(ws)
        assert welcome["type"] == "welcome" and "id" not in welcome and welcome["sessionId"] == "sess_protocol"
        await ws.send(json.dumps({"type": "auth", "id": "again", "token": keys.token("user_header")}))
        assert (await recv(ws))["code"] == "already_authenticated"
        await ws.close()

    asyncio.run(run())


def test_presence_events_follow_a_subscription(live, keys):
    async def run():
        watcher = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token("user_watcher")})
        await recv(watcher)
        await watcher.send(json.dumps({"type": "presence.subscribe", "id": "s", "userIds": ["user_friend"]}))
        snapshot = await reply(watcher)
        assert snapshot["data"]["users"] == [{"userId": "user_friend", "isOnline": False, "lastSeen": None}]

        friend = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token("user_friend")})
        await recv(friend)
        event = await recv(watcher)
        assert event["type"] == "presence" and event["userId"] == "user_friend" and event["isOnline"] is True
        await friend.close()
        event = await recv(watcher)
        assert event["type"] == "presence" and event["isOnline"] is False and event["lastSeen"]

        await watcher.send(json.dumps({"type": "presence.unsubscribe", "id": "u", "userIds": ["user_friend"]}))
        assert await reply(watcher) == {"type": "ok", "id": "u", "data": {}}
        await watcher.close()

    asyncio.run(run())


def test_unknown_type_is_an_error_and_the_connection_stays_open(live, keys):
    async def run():
        ws = await open_ws(live)
        await ws.send(json.dumps({"type": "no.such.type", "id": "t1"}))
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "unknown_type" and error["id"] == "t1"
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        pong = await recv(ws)
        assert pong["type"] == "ok" and pong["id"] == "p1" and "time" in pong["data"]
        # The same after authentication.
        await ws.send(json.dumps({"type": "auth", "id": "a", "token": keys.token("user_unknown")}))
        assert (await recv(ws))["type"] == "welcome"
        await ws.send(json.dumps({"type": "Ping", "id": "t2"}))   # types are case-sensitive
        assert (await recv(ws))["code"] == "unknown_type"
        await ws.send(json.dumps({"type": "ping", "id": "p2"}))
        assert (await recv(ws))["id"] == "p2"
        await ws.close()

    asyncio.run(run())


def test_malformed_frames_get_error_codes(live):
    async def run():
        ws = await open_ws(live)
        for raw, code in [("{not json", "bad_json"), ("[1, 2]", "bad_json"), ('"ping"', "bad_json"),
                          ('{"id": "x"}', "bad_request"), ('{"type": "ping", "id": 7}', "bad_request"),
                          ('{"type": "presence.subscribe", "id": "x", "userIds": ["a"]}', "unauthenticated")]:
            await ws.send(raw)
            error = await recv(ws)
            assert error["type"] == "error" and error["code"] == code, (raw, error)
        await ws.send(json.dumps({"type": "ping"}))   # still open; no id in, no id out
        pong = await recv(ws)
        assert pong["type"] == "ok" and "id" not in pong and set(pong["data"]) == {"time"}
        await ws.close()

    asyncio.run(run())


def test_requests_are_refused_with_bad_request_and_their_id(live, keys):
    async def run():
        ws = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token("user_bad")})
        await recv(ws)
        for frame in [{"type": "users.query", "id": "q1", "limit": 201},
                      {"type": "users.query", "id": "q2", "search": 5},
                      {"type": "users.query", "id": "q3", "online": 1},
                      {"type": "users.query", "id": "q4", "limit": True},
                      {"type": "presence.subscribe", "id": "s1", "userIds": ["has space"]},
                      {"type": "presence.subscribe", "id": "s2", "userIds": [f"user_{i}" for i in range(1001)]},
                      {"type": "refresh", "id": "r1", "token": ""}]:
            with pytest.raises(jsonschema.ValidationError):
                CLIENT_FRAME.validate(frame)
            await ws.send(json.dumps(frame))
            error = await recv(ws)
            assert (error["code"], error["id"]) == ("bad_request", frame["id"]), error
        for limit in (1, 200):   # the bounds themselves are fine
            await ws.send(json.dumps({"type": "users.query", "id": f"l{limit}", "limit": limit}))
            answer = await reply(ws)
            assert (answer["type"], answer["id"]) == ("ok", f"l{limit}"), answer
        await ws.close()

    asyncio.run(run())


def test_refused_tokens_close_with_4003_and_4004(live, keys):
    async def run():
        for token, code, close in [("not.a.token", "token_invalid", 4003),
                                   (keys.token("user_late", ttl=-30), "token_expired", 4004)]:
            ws = await open_ws(live)
            await ws.send(json.dumps({"type": "auth", "id": "a", "token": token}))
            error = await recv(ws)
            assert (error["code"], error["id"]) == (code, "a")
            assert await close_code(ws) == close

    asyncio.run(run())


def test_message_over_64_kib_closes_with_1009(live):
    def padded(size):
        text = json.dumps({"type": "ping", "id": "big", "pad": ""})
        return text[:-2] + "x" * (size - len(text)) + text[-2:]

    async def run():
        ws = await open_ws(live)
        exact = padded(MAX_MESSAGE)
        assert len(exact.encode()) == MAX_MESSAGE
        await ws.send(exact)
        assert (await recv(ws))["id"] == "big"
        await ws.send(padded(MAX_MESSAGE + 1))
        assert await close_code(ws) == 1009

    asyncio.run(run())


def test_rate_limited_frames_are_errors(live):
    async def run():
        ws = await open_ws(live)
        for i in range(150):
            await ws.send(json.dumps({"type": "ping", "id": str(i)}))
        frames = [await recv(ws) for _ in range(150)]
        limited = [f for f in frames if f["type"] == "error"]
        assert limited and all(f["code"] == "rate_limited" and "id" not in f for f in limited)
        await ws.close()

    asyncio.run(run())


def test_no_auth_within_the_timeout_closes_with_4001(mongo_uri, keys):
    s = start(mongo_uri, keys, WS_AUTH_TIMEOUT_SECONDS="1")
    try:
        async def run():
            ws = await open_ws(s)
            began = time.monotonic()
            await ws.send(json.dumps({"type": "ping", "id": "p"}))   # a ping does not authenticate
            code = await close_code(ws, timeout=10)
            return code, time.monotonic() - began

        code, elapsed = asyncio.run(run())
        assert code == 4001
        assert 0.8 <= elapsed < 5
    finally:
        s.stop()
