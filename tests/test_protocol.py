"""The protocol/ folder is the contract of the WebSocket channel: its JSON Schemas, examples and
AsyncAPI document must agree with each other, with the Swift sources' codes, types and events, and with
what a running chat-server actually sends (driven with `websockets`, tokens minted with PyJWT)."""
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
SOURCES = ROOT / "Sources"

CHAT_REQUESTS = ["conversation.direct", "conversation.create", "conversation.rename", "conversation.add",
                 "conversation.remove", "conversation.leave", "conversations.list", "message.send", "message.edit",
                 "message.delete", "history", "sync", "read", "typing"]
CHAT_EVENTS = ["conversation", "message", "message.updated", "message.deleted", "read", "typing"]
CLIENT_TYPES = ["auth", "refresh", "ping", "presence.subscribe", "presence.unsubscribe", "users.query"] + CHAT_REQUESTS
SERVER_TYPES = ["welcome", "ok", "error", "presence"] + CHAT_EVENTS
# The `data` of each request's `ok` reply: a $def of server.ok.json (`auth` is answered by `welcome`).
OK_DATA = {
    "ping": "pingResult", "refresh": "refreshResult", "presence.subscribe": "presenceSubscribeResult",
    "presence.unsubscribe": "presenceUnsubscribeResult", "users.query": "usersQueryResult",
    **{t: "conversationResult" for t in CHAT_REQUESTS if t.startswith("conversation.")},
    "conversations.list": "conversationsListResult", "message.send": "messageSendResult",
    "message.edit": "messageEditResult", "message.delete": "messageDeleteResult", "history": "historyResult",
    "sync": "syncResult", "read": "readResult", "typing": "typingResult",
}
MAX_MESSAGE = 64 * 1024
MAX_TEXT = 8000


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


def ok_data_validator(request_type):
    """Validates the `data` of the `ok` reply to a request of that type."""
    return jsonschema.Draft202012Validator({"$ref": f"server.ok.json#/$defs/{OK_DATA[request_type]}"}, registry=REGISTRY,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def request_type_of_ok_example(path):
    """`server.ok.<request type>[.<variant>].json` -> the request type (the longest that fits)."""
    rest = path.name[len("server.ok."):-len(".json")]
    fits = [t for t in OK_DATA if rest == t or rest.startswith(t + ".")]
    assert fits, f"{path.name}: not named after a request type"
    return max(fits, key=len)


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
    # Chat requests: the same rules, plus the chat ones the server enforces.
    CLIENT_FRAME.validate({"type": "history", "conversationId": "g_x", "before": None, "after": 3, "extra": True})
    CLIENT_FRAME.validate({"type": "sync"})
    for frame in [{"type": "history", "conversationId": "g_x", "before": 9, "after": 3},
                  {"type": "sync", "positions": {"has space": 1}},
                  {"type": "message.send", "conversationId": "g_x", "clientId": "c", "text": " \n "},
                  {"type": "message.send", "conversationId": "g_x", "clientId": "c", "text": "x" * (MAX_TEXT + 1)},
                  {"type": "read", "conversationId": "g_x", "seq": -1},
                  {"type": "conversation.create", "name": "   ", "members": []}]:
        with pytest.raises(jsonschema.ValidationError):
            CLIENT_FRAME.validate(frame)


def test_every_message_type_has_an_example():
    named = {load_json(p)["schema"] for p in EXAMPLE_FILES}
    assert named == {f"client.{t}.json" for t in CLIENT_TYPES} | {f"server.{t}.json" for t in SERVER_TYPES}
    for path in EXAMPLE_FILES:
        example = load_json(path)
        assert path.name.startswith(example["schema"][:-len(".json")] + "."), f"{path.name} is not named after its schema"


def test_every_request_has_an_ok_example_and_a_data_schema():
    ok_defs = SCHEMA_DOCS["server.ok.json"]["$defs"]
    assert set(OK_DATA) == set(CLIENT_TYPES) - {"auth"}
    assert set(OK_DATA.values()) == set(ok_defs)
    assert sorted(e["$ref"] for e in SCHEMA_DOCS["server.ok.json"]["properties"]["data"]["anyOf"]) == \
        sorted(f"#/$defs/{name}" for name in ok_defs)
    answered = set()
    for path, example in examples("server.ok."):
        request_type = request_type_of_ok_example(path)
        ok_data_validator(request_type).validate(example["frame"]["data"])
        answered.add(request_type)
    assert answered == set(OK_DATA)


def test_client_examples_use_only_documented_placeholders():
    for path, example in examples("client."):
        placeholders = set(re.findall(r"<[A-Za-z]+>", json.dumps(example["frame"])))
        assert placeholders <= {"<token>", "<groupId>", "<messageId>"}, path.name
    readme = (PROTOCOL / "README.md").read_text()
    for placeholder in ["<token>", "<groupId>", "<messageId>"]:
        assert f'`"{placeholder}"`' in readme


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


def readme_sections():
    readme = (PROTOCOL / "README.md").read_text()
    return {part.split("\n", 1)[0]: part for part in readme.split("\n## ")[1:]}


def test_every_type_the_server_decodes_is_documented():
    swift = (SOURCES / "ChatDomain" / "Protocol" / "ClientFrame.swift").read_text()
    decoded = re.findall(r'^\s*case "([a-z.]+)":', swift, re.M)
    assert len(decoded) >= 20
    assert sorted(decoded) == sorted(CLIENT_TYPES), "a type the server decodes has no schema, or a schema no decoder"
    sections = readme_sections()
    assert not any("not covered" in title.lower() for title in sections)
    envelope = sections["Envelope"].split("Server frames", 1)[0]
    rest = "".join(text for title, text in sections.items() if title != "Envelope")
    for t in decoded:
        assert f"`{t}`" in envelope, f"{t}: not in the README's list of client types"
        assert f"`{t}`" in rest or f'"type": "{t}"' in rest, f"{t}: no README section describes it"


def test_every_event_the_server_pushes_is_documented():
    code = "\n".join(re.sub(r"//.*", "", p.read_text()) for p in sorted(SOURCES.rglob("*.swift")))
    pushed = set(re.findall(r'\.event\(type: "([a-z.]+)"', code)) | set(re.findall(r'\btype = "([a-z.]+)"', code))
    assert sorted(pushed) == sorted(CHAT_EVENTS), "an event the server pushes has no schema, or a schema no event"
    sections = readme_sections()
    table = sections["Envelope"].split("Server frames", 1)[1]
    for t in CHAT_EVENTS:
        assert f"`{t}`" in table, f"{t}: not in the README's table of server frames"


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


def test_asyncapi_has_a_send_operation_per_request_and_receives_every_server_frame():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    channel = doc["channels"]["chat"]["messages"]
    assert set(channel) == set(doc["components"]["messages"])

    def payload(ref):   # '#/channels/chat/messages/<key>' -> the payload schema's file name
        key = ref.rsplit("/", 1)[1]
        return pathlib.Path(doc["components"]["messages"][key]["payload"]["$ref"]).name

    sent = {}
    received = set()
    for name, op in doc["operations"].items():
        files = [payload(m["$ref"]) for m in op["messages"]]
        if op["action"] == "send":
            assert len(files) == 1, name
            sent[files[0]] = op
        else:
            received |= set(files)
    assert set(sent) == {f"client.{t}.json" for t in CLIENT_TYPES}
    assert received == {f"server.{t}.json" for t in SERVER_TYPES}
    for t in CHAT_REQUESTS:   # each chat operation names the shape of its ok data
        assert f"server.ok.json#/$defs/{OK_DATA[t]}" in sent[f"client.{t}.json"]["description"], t


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


class Peer:
    """A connection whose every incoming frame is checked against server-frame.json. Replies are matched
    to requests by `id` (events can come before the reply of the request that caused them); events
    are kept in arrival order."""

    def __init__(self, ws, welcome):
        self.ws = ws
        self.welcome = welcome
        self.user = welcome["userId"]
        self.events = []
        self.invalid = []
        self.pending = {}
        self.arrived = asyncio.Event()
        self.ids = iter(range(1, 1_000_000))
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, server, token):
        ws = await open_ws(server, additional_headers={"Authorization": "Bearer " + token})
        welcome = await recv(ws)
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome)

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                try:
                    SERVER_FRAME.validate(frame)
                except jsonschema.ValidationError as e:
                    self.invalid.append((frame, e.message))
                waiter = self.pending.pop(frame.get("id"), None) if frame.get("type") in ("ok", "error") else None
                if waiter and not waiter.done():
                    waiter.set_result(frame)
                else:
                    self.events.append(frame)
                    self.arrived.set()
        except ConnectionClosed:
            pass

    async def send(self, frame, timeout=10):
        """Sends a frame as is; returns its reply (`ok` or `error`)."""
        future = asyncio.get_running_loop().create_future()
        self.pending[frame.get("id")] = future
        await self.ws.send(json.dumps(frame))
        answer = await asyncio.wait_for(future, timeout)
        assert not self.invalid, self.invalid
        return answer

    async def request(self, type_, **fields):
        return await self.send({"type": type_, "id": f"{self.user}#{next(self.ids)}", **fields})

    async def call(self, type_, **fields):
        """A request that must succeed: its `ok` data, checked against the request type's data schema."""
        answer = await self.request(type_, **fields)
        assert answer["type"] == "ok", (type_, answer)
        ok_data_validator(type_).validate(answer["data"])
        return answer["data"]

    async def refused(self, type_, **fields):
        answer = await self.request(type_, **fields)
        assert answer["type"] == "error", (type_, answer)
        return answer["code"]

    async def event(self, type_, match=lambda frame: True, timeout=10):
        """The first event of that type (and match) seen so far or arriving within the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.events:
                if frame["type"] == type_ and match(frame):
                    return frame
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.user}: no {type_} event; got {[f['type'] for f in self.events]}")
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    def seen(self, type_, match=lambda frame: True):
        return [f for f in self.events if f["type"] == type_ and match(f)]

    async def close(self):
        await self.ws.close()
        await self.reader
        assert not self.invalid, self.invalid


ADA, BOB, CY, DEE = "user_2aXw9kP1mQz7Lr3tYb", "user_2bQe5nH8cVd4Ks6pJu", "user_2cTn3sW7xLm9Pq1dRa", "user_2dVr6mJ3kXs8Nb2qLc"


def direct_id(a, b):
    return "dm:" + ":".join(sorted([a, b]))


def with_placeholders(frame, values):
    """The frame with `"<token>"`, `"<groupId>"`, `"<messageId>"` replaced (values and object keys)."""
    text = json.dumps(frame)
    for placeholder, value in values.items():
        text = text.replace(f'"{placeholder}"', json.dumps(value))
    return json.loads(text)


def test_every_client_example_gets_valid_replies(live, keys):
    """Every client example, sent as ADA (who opened a direct conversation with BOB): an `ok` whose data
    fits its request type. `<groupId>` is a new group of ADA, BOB and CY for each example, `<messageId>`
    a new message of ADA in the frame's conversation; the users the examples name have connected."""
    client = dict(examples("client."))
    auth = client.pop(EXAMPLES / "client.auth.json")

    async def run():
        others = [await Peer.connect(live, keys.token(u)) for u in (BOB, CY, DEE)]
        ws = await open_ws(live)
        await ws.send(json.dumps(with_placeholders(auth["frame"], {"<token>": keys.token(ADA)})))
        welcome = await reply(ws)
        assert welcome["type"] == "welcome" and welcome["id"] == auth["frame"]["id"] and welcome["userId"] == ADA
        ada = Peer(ws, welcome)
        # Give the directory something to return for the users.query example ("ada", online).
        live.db.users.update_one({"clerkId": ADA}, {"$set": {
            "username": "ada", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com",
            "imageUrl": "https://img.example.com/ada.png"}})
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]
        assert dm == direct_id(ADA, BOB)
        seen = set()
        for path, example in sorted(client.items()):
            values = {"<token>": keys.token(ADA)}
            text = json.dumps(example["frame"])
            if "<groupId>" in text:
                values["<groupId>"] = (await ada.call("conversation.create", name="setup", members=[BOB, CY]))["conversation"]["conversationId"]
            if "<messageId>" in text:
                target = with_placeholders(example["frame"], values)["conversationId"]
                values["<messageId>"] = (await ada.call("message.send", conversationId=target, clientId=f"setup-{path.name}",
                                                        text="to be changed"))["messageId"]
            frame = with_placeholders(example["frame"], values)
            CLIENT_FRAME.validate(frame)
            answer = await ada.send(frame)
            assert answer["type"] == "ok", (path.name, answer)
            assert answer.get("id") == frame.get("id"), path.name
            t = frame["type"]
            ok_data_validator(t).validate(answer["data"])
            seen.add(t)
            data = answer["data"]
            if t == "users.query" and frame.get("search") == "ada":
                assert [u["userId"] for u in data["users"]] == [ADA]
                assert data["users"][0]["username"] == "ada"
            if t == "presence.subscribe":
                assert [u["userId"] for u in data["users"]] == frame["userIds"]
            if t.startswith("conversation."):
                conversation = data["conversation"]
                if "conversationId" in frame:
                    assert conversation["conversationId"] == frame["conversationId"]
                members = conversation["members"]
                expected = {"conversation.direct": lambda: conversation["conversationId"] == dm,
                            "conversation.create": lambda: members == [ADA] + frame["members"] and conversation["name"] == frame["name"],
                            "conversation.rename": lambda: conversation["name"] == frame["name"],
                            "conversation.add": lambda: set(frame["userIds"]) <= set(members),
                            "conversation.remove": lambda: frame["userId"] not in members,
                            "conversation.leave": lambda: ADA not in members}[t]
                assert expected(), (path.name, conversation)
            if t == "conversations.list" and "before" not in frame:
                assert dm in [c["conversationId"] for c in data["conversations"]]
            if t == "conversations.list" and "before" in frame:   # the example's cursor is from 2025
                assert data == {"conversations": [], "next": None}
            if t == "message.send":
                assert (data["conversationId"], data["clientId"]) == (frame["conversationId"], frame["clientId"])
                again = await ada.send({**frame, "id": "resent"})   # the same clientId: the same ack
                assert again == {"type": "ok", "id": "resent", "data": data}
            if t == "message.edit":
                assert data["message"]["text"] == frame["text"] and data["message"]["editedAt"]
            if t == "message.delete":
                assert data["message"]["deleted"] is True and data["message"]["messageId"] == frame["messageId"]
            if t == "history":
                assert [m["seq"] for m in data["messages"]] == sorted(m["seq"] for m in data["messages"])
            if t == "sync":
                for entry in data["conversations"]:
                    position = frame.get("positions", {}).get(entry["conversation"]["conversationId"], 0)
                    assert [m["seq"] for m in entry["messages"]] == list(range(position + 1, position + 1 + len(entry["messages"])))
            if t == "read":
                assert data["seq"] <= frame["seq"]
            if t == "typing":
                assert data == {"sent": True}
        assert seen == set(CLIENT_TYPES) - {"auth"}
        # The events the examples caused reached the examples' users, and fit the schemas (checked on arrival).
        assert {f["type"] for f in ada.events} >= {"conversation", "message", "message.updated", "message.deleted", "read"}
        assert (await others[0].event("typing"))["userId"] == ADA
        for peer in [ada] + others:
            await peer.close()

    asyncio.run(run())


def test_chat_events_reach_the_documented_connections(live, keys):
    """Who gets which event (README: Delivery order and multiple devices), every frame schema-checked."""
    async def run():
        ada1, ada2 = await Peer.connect(live, keys.token(ADA)), await Peer.connect(live, keys.token(ADA))
        bob, cy = await Peer.connect(live, keys.token(BOB)), await Peer.connect(live, keys.token(CY))
        everyone = [ada1, ada2, bob, cy]

        group = (await ada1.call("conversation.create", name="Launch team", members=[BOB]))["conversation"]
        gid = group["conversationId"]
        assert re.fullmatch(r"g_[0-9a-f]{32}", gid) and group["members"] == [ADA, BOB] and group["lastSeq"] == 0
        for peer in (ada1, ada2, bob):
            assert (await peer.event("conversation"))["conversation"] == group
        added = (await ada1.call("conversation.add", conversationId=gid, userIds=[CY, BOB]))["conversation"]
        assert added["members"] == [ADA, BOB, CY]
        assert (await cy.event("conversation"))["conversation"] == added

        ack = await ada1.call("message.send", conversationId=gid, clientId="c-1", text="Kick-off moved to Thursday ☕")
        assert ack["seq"] == 1 and ack["clientId"] == "c-1" and ack["conversationId"] == gid
        for peer in everyone:   # every member's connections, the sender's (both) included
            message = (await peer.event("message"))["message"]
            assert (message["messageId"], message["seq"], message["senderId"]) == (ack["messageId"], 1, ADA)
            assert message["createdAt"] == ack["createdAt"] and message["editedAt"] is None and "senderDeleted" not in message
        assert await ada1.call("message.send", conversationId=gid, clientId="c-1", text="again?") == ack
        second = await bob.call("message.send", conversationId=gid, clientId="c-1", text="same clientId, other sender")
        assert second["seq"] == 2   # idempotency is per sender
        await ada2.event("message", lambda f: f["message"]["seq"] == 2)
        assert [f["message"]["seq"] for f in ada2.seen("message")] == [1, 2]   # no event for the resent one

        edited = (await ada1.call("message.edit", conversationId=gid, messageId=ack["messageId"], text="Thursday 10:00"))["message"]
        assert edited["text"] == "Thursday 10:00" and edited["editedAt"]
        for peer in everyone:
            assert (await peer.event("message.updated"))["message"] == edited
        assert await bob.refused("message.edit", conversationId=gid, messageId=ack["messageId"], text="mine now") == "forbidden"
        deleted = (await ada1.call("message.delete", conversationId=gid, messageId=ack["messageId"]))["message"]
        assert deleted["deleted"] is True and deleted["text"] is None and deleted["editedAt"] == edited["editedAt"]
        for peer in everyone:
            assert (await peer.event("message.deleted"))["message"] == deleted
        assert await ada1.refused("message.delete", conversationId=gid, messageId=ack["messageId"]) == "not_found"

        assert await cy.call("read", conversationId=gid, seq=99) == {"conversationId": gid, "seq": 2}   # capped at lastSeq
        for peer in everyone:   # the reader's own connection too
            receipt = await peer.event("read")
            assert (receipt["userId"], receipt["seq"]) == (CY, 2)
        assert (await cy.call("read", conversationId=gid, seq=1))["seq"] == 2   # never backwards
        listed = {c["conversationId"]: c for c in (await ada1.call("conversations.list"))["conversations"]}
        assert listed[gid]["unread"] == 1 and listed[gid]["lastSeq"] == 2   # BOB's; ADA's own one is deleted anyway
        assert listed[gid]["lastMessage"]["seq"] == 2

        assert await bob.call("typing", conversationId=gid) == {"sent": True}
        for peer in (ada1, ada2, cy):
            typing = await peer.event("typing")
            assert (typing["userId"], typing["conversationId"], typing["expiresInMs"]) == (BOB, gid, 5000)
        assert await bob.call("typing", conversationId=gid) == {"sent": False}   # within 2 s: dropped

        page = await cy.call("history", conversationId=gid)
        assert [m["seq"] for m in page["messages"]] == [1, 2] and page["hasMore"] is False
        assert page["messages"][0]["deleted"] is True and page["messages"][0]["text"] is None
        older = await cy.call("history", conversationId=gid, before=2, limit=1)
        assert [m["seq"] for m in older["messages"]] == [1] and older["hasMore"] is False
        newer = await cy.call("history", conversationId=gid, after=0, limit=1)
        assert [m["seq"] for m in newer["messages"]] == [1] and newer["hasMore"] is True
        synced = (await cy.call("sync", positions={gid: 1}))["conversations"]
        assert [(e["conversation"]["conversationId"], [m["seq"] for m in e["messages"]], e["hasMore"]) for e in synced] == [(gid, [2], False)]
        assert (await cy.call("sync", positions={gid: 2}))["conversations"] == []

        removed = (await ada1.call("conversation.remove", conversationId=gid, userId=CY))["conversation"]
        assert removed["members"] == [ADA, BOB]
        assert (await cy.event("conversation", lambda f: CY not in f["conversation"]["members"]))["conversation"] == removed
        assert await cy.refused("history", conversationId=gid) == "forbidden"
        assert await cy.refused("typing", conversationId=gid) == "forbidden"
        assert await cy.call("sync") == {"conversations": [], "hasMore": False}

        left = (await bob.call("conversation.leave", conversationId=gid))["conversation"]
        assert left["members"] == [ADA]
        await ada2.event("conversation", lambda f: f["conversation"]["members"] == [ADA])

        # Typing never reaches the typer's own connections.
        assert not ada1.seen("typing", lambda f: f["userId"] == ADA) and not bob.seen("typing")
        for peer in everyone:
            await peer.close()
        assert {f["type"] for f in ada2.events} == set(CHAT_EVENTS)   # all six seen, and schema-checked

    asyncio.run(run())


def test_direct_conversations_and_chat_errors(live, keys):
    """Refusals come with the request's id and the documented code; frames the server refuses as
    `bad_request` or `invalid_message` are refused by client-frame.json too."""
    async def run():
        ada, bob = await Peer.connect(live, keys.token(ADA)), await Peer.connect(live, keys.token(BOB))
        eve = await Peer.connect(live, keys.token("user_2eEv1lPq0Zx9Wm8Kt"))
        dm = (await bob.call("conversation.direct", userId=ADA))["conversation"]
        assert dm == {**dm, "conversationId": direct_id(ADA, BOB), "kind": "direct", "name": None, "members": sorted([ADA, BOB])}
        assert (await ada.event("conversation"))["conversation"] == dm
        assert (await ada.call("conversation.direct", userId=BOB))["conversation"] == dm   # the same one, no new event
        cid = dm["conversationId"]
        exact = "é" * (MAX_TEXT // 2)   # exactly 8000 bytes
        assert (await ada.call("message.send", conversationId=cid, clientId="max", text=exact))["seq"] == 1
        # The limit counts bytes (which the schema cannot): one more 2-byte character is too long.
        assert await ada.refused("message.send", conversationId=cid, clientId="max+1", text=exact + "é") == "invalid_message"

        for frame, code in [
            ({"type": "message.send", "conversationId": cid, "clientId": "c", "text": "   \n"}, "invalid_message"),
            ({"type": "message.send", "conversationId": cid, "clientId": "c", "text": "x" * (MAX_TEXT + 1)}, "invalid_message"),
            ({"type": "message.send", "conversationId": cid, "clientId": "c"}, "bad_request"),
            ({"type": "message.send", "conversationId": cid, "clientId": "c" * 129, "text": "hi"}, "bad_request"),
            ({"type": "message.send", "conversationId": "has space", "clientId": "c", "text": "hi"}, "bad_request"),
            ({"type": "message.edit", "conversationId": cid, "messageId": "", "text": "hi"}, "bad_request"),
            ({"type": "history", "conversationId": cid, "before": 5, "after": 1}, "bad_request"),
            ({"type": "history", "conversationId": cid, "limit": 201}, "bad_request"),
            ({"type": "sync", "positions": {cid: True}}, "bad_request"),
            ({"type": "sync", "positions": {cid: -1}}, "bad_request"),
            ({"type": "read", "conversationId": cid, "seq": -1}, "bad_request"),
            ({"type": "read", "conversationId": cid}, "bad_request"),
            ({"type": "conversations.list", "limit": 0}, "bad_request"),
            ({"type": "users.query", "search": "a" * 201}, "bad_request"),
            ({"type": "conversations.list", "before": "yesterday"}, "bad_request"),
            ({"type": "conversations.list", "before": 1746360309655}, "bad_request"),
            ({"type": "conversation.create", "name": "  ", "members": []}, "bad_request"),
            ({"type": "conversation.create", "name": "n" * 201, "members": []}, "bad_request"),
            ({"type": "conversation.create", "name": "no members field"}, "bad_request"),
            ({"type": "conversation.direct", "userId": "has space"}, "bad_request"),
            ({"type": "typing", "conversationId": ""}, "bad_request"),
        ]:
            with pytest.raises(jsonschema.ValidationError):
                CLIENT_FRAME.validate(frame)
            answer = await ada.send({**frame, "id": "bad"})
            assert (answer["type"], answer["code"], answer["id"]) == ("error", code, "bad"), (frame, answer)

        group = (await ada.call("conversation.create", name="g", members=[]))["conversation"]["conversationId"]
        for who, type_, fields, code in [
            (ada, "conversation.direct", {"userId": ADA}, "bad_request"),
            (ada, "conversation.direct", {"userId": "user_never_connected"}, "not_found"),
            (ada, "conversation.create", {"name": "g", "members": ["user_never_connected"]}, "not_found"),
            (ada, "conversation.rename", {"conversationId": cid, "name": "x"}, "bad_request"),
            (ada, "conversation.leave", {"conversationId": cid}, "bad_request"),
            (ada, "conversation.remove", {"conversationId": group, "userId": BOB}, "not_found"),
            (ada, "conversation.add", {"conversationId": group, "userIds": ["user_never_connected"]}, "not_found"),
            (ada, "history", {"conversationId": "g_00000000000000000000000000000000"}, "not_found"),
            (ada, "message.edit", {"conversationId": cid, "messageId": "m_nope", "text": "hi"}, "not_found"),
            (eve, "history", {"conversationId": cid}, "forbidden"),
            (eve, "message.send", {"conversationId": cid, "clientId": "e", "text": "let me in"}, "forbidden"),
            (eve, "read", {"conversationId": cid, "seq": 1}, "forbidden"),
            (eve, "conversation.leave", {"conversationId": group}, "forbidden"),
        ]:
            CLIENT_FRAME.validate({"type": type_, **fields})
            assert await who.refused(type_, **fields) == code, (type_, fields)
        for peer in (ada, bob, eve):
            await peer.close()

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
