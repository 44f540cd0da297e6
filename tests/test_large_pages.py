"""Replies are never the slow consumer: `history`, `sync` and `conversations.list` pages are bounded in
bytes as well as in count, so a reader that reads promptly pages through large messages without being
closed with 4009 (the outbound limit is about what a client leaves unread)."""
import asyncio
import json
import uuid

import pytest

from chat_client import Client
from conftest import Server
from jwt_keys import Issuer

ISSUER = Issuer()
PAGE_BOUND = 256 * 1024            # protocol/README.md: a page carries at most 256 KiB of messages...
FRAME_SLACK = 64 * 1024            # ...plus its envelope and one message (8000 bytes escape to 48 KB)


def uid(name):
    return f"user_{name}_{uuid.uuid4().hex[:8]}"


# The tests send up to 150 messages in bursts of 25: over the default rate limit (bursts of 100),
# whose dropped frames are answered without their id.
ENV = {**ISSUER.env(), "WS_RATE_LIMIT": "1000", "WS_RATE_BURST": "1000"}


@pytest.fixture
def server(mongo_uri):
    s = Server(mongo_uri, env=ENV)
    yield s
    s.stop()


class SizedClient(Client):
    """Records the size of every reply frame (the Client parses them)."""

    async def _read(self):
        self.sizes = {}
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.sizes[frame.get("id")] = len(raw.encode() if isinstance(raw, str) else raw)
                waiter = self.pending.pop(frame.get("id"), None) if frame.get("type") in ("ok", "error") else None
                if waiter:
                    waiter.set_result(frame)
                else:
                    await self.events.put(frame)
        except Exception:
            pass

    async def send_message(self, cid, client_id, text):
        """`message.send`, waiting longer than `request` does: big batches on a loaded machine."""
        rid = f"send-{client_id}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send(json.dumps({"type": "message.send", "id": rid, "conversationId": cid,
                                       "clientId": client_id, "text": text}))
        frame = await asyncio.wait_for(fut, 90)
        assert frame["type"] == "ok", frame


async def connect(server, user):
    c = await SizedClient.connect(server.port, ISSUER.token(user, ttl=600))
    return c


async def request(c, type_, **fields):
    data = await c.request(type_, **fields)
    rid = max(c.sizes, key=lambda k: int(k) if k and k.isdigit() else -1)
    assert c.sizes[rid] <= PAGE_BOUND + FRAME_SLACK, f"{type_} reply of {c.sizes[rid]} bytes"
    return data


def still_open(c):
    return c.ws.close_code is None


async def group_with_history(server, texts):
    """Alice puts Bob in a group and sends `texts` while Bob is away; returns Alice and the group id."""
    alice, bob = uid("alice"), uid("bob")
    b = await connect(server, bob)          # Bob exists once he has connected
    await b.close()
    a = await connect(server, alice)
    cid = (await a.request("conversation.create", name="big", members=[bob]))["conversation"]["conversationId"]
    for start in range(0, len(texts), 25):
        await asyncio.gather(*(a.send_message(cid, f"c{i}", t) for i, t in enumerate(texts[start:start + 25], start)))
    return a, bob, cid


async def sync_everything(c, cid, limit=None):
    """The documented catch-up: sync, then history `after` the last seq while hasMore; the seqs seen."""
    fields = {"limit": limit} if limit else {}
    data = await request(c, "sync", **fields)
    entry = next(e for e in data["conversations"] if e["conversation"]["conversationId"] == cid)
    seqs = [m["seq"] for m in entry["messages"]]
    more, pages = entry["hasMore"], 1
    while more:
        data = await request(c, "history", conversationId=cid, after=seqs[-1], limit=limit or 50)
        seqs += [m["seq"] for m in data["messages"]]
        more, pages = data["hasMore"], pages + 1
    return seqs, pages


async def history_backwards(c, cid, limit):
    """The newest page, then `before` the oldest seq while hasMore; the seqs seen, ascending."""
    data = await request(c, "history", conversationId=cid, limit=limit)
    seqs, pages = [m["seq"] for m in data["messages"]], 1
    more = data["hasMore"]
    while more:
        data = await request(c, "history", conversationId=cid, before=seqs[0], limit=limit)
        seqs = [m["seq"] for m in data["messages"]] + seqs
        more, pages = data["hasMore"], pages + 1
    return seqs, pages


def test_messages_that_escape_to_48_kb_page_without_a_4009(server):
    # 8,000 control characters: 8,000 bytes of text, 48,000 bytes of JSON ("\u0001" each).
    texts = ["\u0001" * 7999 + str(i % 10) for i in range(25)]

    async def run():
        a, bob, cid = await group_with_history(server, texts)
        b = await connect(server, bob)
        seqs, pages = await sync_everything(b, cid)                     # default limit (100)
        assert seqs == list(range(1, 26)) and pages > 1, (seqs, pages)
        seqs, pages = await history_backwards(b, cid, limit=50)        # default history limit
        assert seqs == list(range(1, 26)) and pages > 1, (seqs, pages)
        full = await request(b, "history", conversationId=cid, after=0, limit=50)
        assert full["hasMore"] and full["messages"][0]["text"] == texts[0]
        assert still_open(b) and (await b.request("ping")) is not None
        await a.close(); await b.close()
    asyncio.run(run())


def test_ordinary_7000_byte_texts_at_history_150_and_sync_100(server):
    texts = [f"{i:04d}" + "x" * 6996 for i in range(150)]

    async def run():
        a, bob, cid = await group_with_history(server, texts)
        b = await connect(server, bob)
        seqs, pages = await history_backwards(b, cid, limit=150)
        assert seqs == list(range(1, 151)) and pages > 1
        seqs, pages = await sync_everything(b, cid, limit=100)
        assert seqs == list(range(1, 151)) and pages > 1
        assert still_open(b)
        await a.close(); await b.close()
    asyncio.run(run())


def test_sync_over_many_conversations_is_cut_and_says_so(server):
    # Six conversations of 12 large messages each: far more than one page. `data.hasMore` says the
    # reply was cut; syncing again with the positions held returns the rest, each message once.
    bob = uid("bob")

    async def run():
        b = await connect(server, bob)
        await b.close()
        a = await connect(server, uid("alice"))
        cids = []
        for n in range(6):
            cid = (await a.request("conversation.create", name=f"g{n}", members=[bob]))["conversation"]["conversationId"]
            cids.append(cid)
            await asyncio.gather(*(a.send_message(cid, f"{n}-{i}", "\u0002" * 8000) for i in range(12)))
        b = await connect(server, bob)
        positions, rounds = {}, 0
        while True:
            data = await request(b, "sync", positions=positions)
            rounds += 1
            for e in data["conversations"]:
                cid, got = e["conversation"]["conversationId"], [m["seq"] for m in e["messages"]]
                assert got and got[0] == positions.get(cid, 0) + 1, "each message once, in order"
                positions[cid] = got[-1]
            if not data["hasMore"] and not any(e["hasMore"] for e in data["conversations"]):
                break
            assert rounds < 40
        assert positions == {cid: 12 for cid in cids} and rounds > 1
        assert still_open(b)
        await a.close(); await b.close()
    asyncio.run(run())


def test_conversations_list_of_large_groups_is_cut_at_the_byte_bound(mongo_uri):
    # Members are real users (the group check needs them): 150 ids of 100 bytes in 30 groups carry
    # ~450 KB, more than one page; `next` continues after the last one sent.
    s = Server(mongo_uri, env=ENV)
    try:
        members = [f"user_{i:03d}_" + "m" * 91 for i in range(150)]
        s.db.users.insert_many([{"clerkId": m, "deleted": False, "isOnline": False} for m in members])
        owner = uid("owner")

        async def run():
            a = await connect(s, owner)
            made = set()
            for n in range(30):
                made.add((await a.request("conversation.create", name=f"g{n}", members=members))["conversation"]["conversationId"])
            seen, after, pages = [], None, 0
            while True:
                page = await request(a, "conversations.list", limit=200, **({"before": after} if after else {}))
                seen += [c["conversationId"] for c in page["conversations"]]
                pages += 1
                after = page["next"]
                if after is None:
                    break
            assert sorted(seen) == sorted(made) and len(seen) == len(set(seen)) and pages > 1
            assert still_open(a)
            await a.close()
        asyncio.run(run())
    finally:
        s.stop()
