"""Chat end to end over real sockets, on one and on two server instances sharing the database."""
import asyncio
import datetime
import uuid

import pytest

from chat_client import ChatError, Client
from conftest import Server
from jwt_keys import Issuer

ISSUER = Issuer()


def uid(name):
    return f"user_{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def servers(mongo_uri):
    a = Server(mongo_uri, env=ISSUER.env())
    b = Server(mongo_uri, env=ISSUER.env(), db_name=a.db_name)
    yield a, b
    a.stop()
    b.stop()


async def client(server, user):
    return await Client.connect(server.port, ISSUER.token(user, ttl=600))


async def direct_pair(server, alice, bob):
    """Both users connected to `server`, and their direct conversation's id."""
    a, b = await client(server, alice), await client(server, bob)
    return a, b, (await a.request("conversation.direct", userId=bob))["conversation"]["conversationId"]


def test_direct_messages_both_ways_and_opening_twice_is_the_same_conversation(servers):
    a_srv, _ = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b = await client(a_srv, alice), await client(a_srv, bob)
        conv = (await a.request("conversation.direct", userId=bob))["conversation"]
        again = (await b.request("conversation.direct", userId=alice))["conversation"]
        assert conv["conversationId"] == again["conversationId"] and conv["kind"] == "direct"
        cid = conv["conversationId"]
        ack = await a.request("message.send", conversationId=cid, clientId="c1", text="hi bob")
        assert ack["seq"] == 1 and ack["messageId"] and ack["clientId"] == "c1"
        got = (await b.messages(1))[0]
        assert (got["text"], got["senderId"], got["seq"], got["messageId"]) == ("hi bob", alice, 1, ack["messageId"])
        await b.request("message.send", conversationId=cid, clientId="c1", text="hi alice ☕")
        assert [m["text"] for m in await a.messages(2)] == ["hi bob", "hi alice ☕"]   # own devices get it too
        await a.close(); await b.close()
    asyncio.run(run())


def test_group_of_three_across_two_instances_see_every_message_in_the_same_order(servers):
    a_srv, b_srv = servers
    users = [uid("g1"), uid("g2"), uid("g3")]

    async def run():
        c1, c2 = await client(a_srv, users[0]), await client(a_srv, users[1])
        c3 = await client(b_srv, users[2])   # on the other instance
        group = (await c1.request("conversation.create", name="trio", members=users[1:]))["conversation"]
        cid = group["conversationId"]
        assert sorted(group["members"]) == sorted(users)
        assert (await c3.event("conversation"))["conversation"]["conversationId"] == cid

        async def burst(c, who):
            for i in range(10):
                await c.request("message.send", conversationId=cid, clientId=f"{who}-{i}", text=f"{who} {i}")
        await asyncio.gather(burst(c1, "one"), burst(c2, "two"), burst(c3, "three"))
        seen = [[m["seq"] for m in await c.messages(30)] for c in (c1, c2, c3)]
        assert seen[0] == list(range(1, 31)), seen[0]
        assert seen[0] == seen[1] == seen[2]
        for c in (c1, c2, c3):
            await c.close()
    asyncio.run(run())


def test_retried_send_with_the_same_client_id_stores_one_message_and_acks_the_same(servers):
    a_srv, _ = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b, cid = await direct_pair(a_srv, alice, bob)
        acks = [await a.request("message.send", conversationId=cid, clientId="same", text="once") for _ in range(3)]
        acks += await asyncio.gather(*[a.request("message.send", conversationId=cid, clientId="same", text="once") for _ in range(5)])
        assert all(ack == acks[0] for ack in acks), acks
        await a.close(); await b.close()
    asyncio.run(run())
    assert a_srv.db.messages.count_documents({"conversationId": {"$regex": "^dm:"}, "clientId": "same"}) == 1


def test_offline_member_catches_up_exactly_once_in_order(servers):
    a_srv, b_srv = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b = await client(a_srv, alice), await client(b_srv, bob)
        cid = (await a.request("conversation.direct", userId=bob))["conversation"]["conversationId"]
        await a.request("message.send", conversationId=cid, clientId="first", text="before")
        last_seen = (await b.messages(1))[0]["seq"]
        await b.close()
        for i in range(50):
            await a.request("message.send", conversationId=cid, clientId=f"m{i}", text=f"while away {i}")
        b = await client(b_srv, bob)
        page = (await b.request("sync", positions={cid: last_seen}, limit=100))["conversations"]
        assert len(page) == 1 and page[0]["hasMore"] is False
        got = page[0]["messages"]
        assert [m["seq"] for m in got] == list(range(last_seen + 1, last_seen + 51))
        assert [m["text"] for m in got] == [f"while away {i}" for i in range(50)]
        # A smaller page says there is more, and the next page continues where it stopped.
        first = (await b.request("sync", positions={cid: last_seen}, limit=20))["conversations"][0]
        assert first["hasMore"] is True and len(first["messages"]) == 20
        rest = await b.request("history", conversationId=cid, after=first["messages"][-1]["seq"], limit=100)
        assert [m["seq"] for m in rest["messages"]] == list(range(last_seen + 21, last_seen + 51))
        older = await b.request("history", conversationId=cid, before=3, limit=1)
        assert [m["seq"] for m in older["messages"]] == [2] and older["hasMore"] is True
        await a.close(); await b.close()
    asyncio.run(run())


def test_non_members_cannot_read_send_or_page(servers):
    a_srv, _ = servers
    alice, bob, eve = uid("alice"), uid("bob"), uid("eve")

    async def run():
        a, b, e = await client(a_srv, alice), await client(a_srv, bob), await client(a_srv, eve)
        cid = (await a.request("conversation.direct", userId=bob))["conversation"]["conversationId"]
        await a.request("message.send", conversationId=cid, clientId="x", text="secret")
        for call in [
            e.request("message.send", conversationId=cid, clientId="e1", text="let me in"),
            e.request("history", conversationId=cid),
            e.request("read", conversationId=cid, seq=1),
            e.request("typing", conversationId=cid),
        ]:
            with pytest.raises(ChatError) as refused:
                await call
            assert refused.value.code == "forbidden"
        with pytest.raises(ChatError) as unknown:
            await e.request("history", conversationId="g_doesnotexist")
        assert unknown.value.code == "not_found"
        for bad, code in [({"conversationId": cid, "clientId": "y", "text": ""}, "invalid_message"),
                          ({"conversationId": cid, "clientId": "y", "text": "x" * 9000}, "invalid_message"),
                          ({"conversationId": cid, "clientId": "y"}, "bad_request"),
                          ({"conversationId": "", "clientId": "y", "text": "hi"}, "bad_request")]:
            with pytest.raises(ChatError) as refused:
                await a.request("message.send", **bad)
            assert refused.value.code == code
        assert (await e.request("conversations.list"))["conversations"] == []
        await a.close(); await b.close(); await e.close()
    asyncio.run(run())
    assert a_srv.db.messages.count_documents({}) == 1


def test_edits_deletes_read_receipts_and_typing_reach_the_other_members(servers):
    a_srv, b_srv = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b = await client(a_srv, alice), await client(b_srv, bob)
        cid = (await a.request("conversation.direct", userId=bob))["conversation"]["conversationId"]
        ack = await a.request("message.send", conversationId=cid, clientId="e", text="teh")
        await b.messages(1)
        await a.request("message.edit", conversationId=cid, messageId=ack["messageId"], text="the")
        updated = (await b.event("message.updated"))["message"]
        assert updated["text"] == "the" and updated["editedAt"]
        shown = (await b.request("history", conversationId=cid))["messages"]
        assert [(m["text"], m["editedAt"]) for m in shown] == [("the", updated["editedAt"])]   # history: the latest state
        assert (await b.request("conversations.list"))["conversations"][0]["lastMessage"]["text"] == "the"
        with pytest.raises(ChatError) as refused:
            await b.request("message.edit", conversationId=cid, messageId=ack["messageId"], text="mine now")
        assert refused.value.code == "forbidden"
        await a.request("message.delete", conversationId=cid, messageId=ack["messageId"])
        deleted = (await b.event("message.deleted"))["message"]
        assert deleted["deleted"] is True and deleted["text"] is None
        history = await b.request("history", conversationId=cid)
        assert history["messages"][0]["deleted"] is True and history["messages"][0]["text"] is None
        await b.request("read", conversationId=cid, seq=1)
        receipt = await a.event("read")
        assert (receipt["userId"], receipt["seq"]) == (bob, 1)
        await b.request("typing", conversationId=cid)
        typing = await a.event("typing")
        assert typing["userId"] == bob and typing["expiresInMs"] > 0
        second = await b.request("typing", conversationId=cid)
        assert second["sent"] is False   # rate-limited
        await a.close(); await b.close()
    asyncio.run(run())


def test_unread_counts_follow_read_state(servers):
    a_srv, _ = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b, cid = await direct_pair(a_srv, alice, bob)
        for i in range(5):
            await a.request("message.send", conversationId=cid, clientId=f"u{i}", text=f"{i}")
        listed = (await b.request("conversations.list"))["conversations"]
        assert listed[0]["conversationId"] == cid and listed[0]["unread"] == 5
        assert listed[0]["lastMessage"]["text"] == "4"
        assert (await a.request("conversations.list"))["conversations"][0]["unread"] == 0   # own messages
        await b.request("read", conversationId=cid, seq=3)
        assert (await b.request("conversations.list"))["conversations"][0]["unread"] == 2
        await b.request("read", conversationId=cid, seq=1)   # never backwards
        assert (await b.request("conversations.list"))["conversations"][0]["unread"] == 2
        await a.close(); await b.close()
    asyncio.run(run())


def test_conversations_list_pages_through_every_conversation_once_in_order(servers):
    a_srv, _ = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b = await client(a_srv, alice), await client(a_srv, bob)
        ids = [(await a.request("conversation.create", name=f"g{i}", members=[bob]))["conversation"]["conversationId"]
               for i in range(6)]
        ids.append((await a.request("conversation.direct", userId=bob))["conversation"]["conversationId"])
        # Four of them active in the same millisecond: the id breaks the tie, so no page repeats or skips one.
        tied = a_srv.db.conversations.find_one({"_id": ids[1]})["updatedAt"]
        a_srv.db.conversations.update_many({"_id": {"$in": ids[1:5]}}, {"$set": {"updatedAt": tied}})
        everything = await a.request("conversations.list", limit=200)
        assert everything["next"] is None
        expected = [c["conversationId"] for c in everything["conversations"]]
        assert sorted(expected) == sorted(ids)
        paged, before, sizes = [], None, []
        while True:
            page = await a.request("conversations.list", limit=3, **({"before": before} if before else {}))
            paged += [c["conversationId"] for c in page["conversations"]]
            sizes.append(len(page["conversations"]))
            before = page["next"]
            if before is None:
                break
        assert paged == expected and sizes == [3, 3, 1]
        # New activity moves a conversation to the top of the next listing.
        await a.request("message.send", conversationId=expected[-1], clientId="up", text="back on top")
        assert (await a.request("conversations.list", limit=1))["conversations"][0]["conversationId"] == expected[-1]
        with pytest.raises(ChatError) as refused:
            await a.request("conversations.list", before="not a cursor")
        assert refused.value.code == "bad_request"
        await a.close(); await b.close()
    asyncio.run(run())


def test_concurrent_senders_share_transactions(servers):
    a_srv, _ = servers
    members = [uid(f"m{i}") for i in range(4)]

    async def run():
        clients = [await client(a_srv, m) for m in members]
        group = (await clients[0].request("conversation.create", name="busy", members=members[1:]))["conversation"]["conversationId"]
        sends = [c.request("message.send", conversationId=group, clientId=f"{i}-{n}", text=f"{i}/{n}")
                 for n in range(20) for i, c in enumerate(clients)]
        acks = await asyncio.gather(*sends)
        assert sorted(a["seq"] for a in acks) == list(range(1, 81))
        for c in clients:
            await c.close()
    asyncio.run(run())
    m = a_srv.metrics()
    batches, carried = m[("chat_message_batches_total", ())], m[("chat_message_batch_sends_total", ())]
    assert carried == 80
    # Group commit: 80 sends arriving together do not take 80 transactions.
    assert batches <= 40, (batches, carried)


def test_bursts_of_small_medium_and_large_frames_arrive_intact(servers):
    # Frames queued together for one socket leave in one write; every length encoding must survive it.
    a_srv, _ = servers
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b, cid = await direct_pair(a_srv, alice, bob)
        texts = ["x" * n for n in [5, 125, 126, 4000, 7990] * 6]
        pongs = await asyncio.gather(*[a.request("message.send", conversationId=cid, clientId=f"b{i}", text=t)
                                       for i, t in enumerate(texts)], *[b.request("ping") for _ in range(5)])
        assert all("time" in p for p in pongs[len(texts):])   # replies under 126 bytes, between the messages
        got = sorted(await b.messages(len(texts)), key=lambda m: m["seq"])
        assert sorted(m["text"] for m in got) == sorted(texts)
        page, more = await asyncio.gather(b.request("history", conversationId=cid, limit=200),   # one frame > 64 KiB
                                          a.request("message.send", conversationId=cid, clientId="after", text="tail"))
        assert len(page["messages"]) == len(texts) + (1 if page["messages"][-1]["text"] == "tail" else 0)
        assert (await b.messages(1))[0]["text"] == "tail"
        await a.close(); await b.close()
    asyncio.run(run())


def test_the_message_size_limit_is_configurable(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "CHAT_MAX_MESSAGE_BYTES": "2000"})
    alice, bob = uid("alice"), uid("bob")

    async def run():
        a, b, cid = await direct_pair(server, alice, bob)
        assert (await a.request("message.send", conversationId=cid, clientId="fits", text="é" * 1000))["seq"] == 1
        with pytest.raises(ChatError) as refused:
            await a.request("message.send", conversationId=cid, clientId="over", text="é" * 1000 + "x")   # 2001 bytes
        assert refused.value.code == "invalid_message"
        await a.close(); await b.close()
    try:
        asyncio.run(run())
        assert server.db.messages.count_documents({}) == 1
    finally:
        server.stop()


def test_group_membership_changes(servers):
    a_srv, _ = servers
    u = [uid("m1"), uid("m2"), uid("m3")]

    async def run():
        c = [await client(a_srv, x) for x in u]
        cid = (await c[0].request("conversation.create", name="team", members=[u[1]]))["conversation"]["conversationId"]
        await c[0].request("conversation.rename", conversationId=cid, name="team 2")
        await c[0].request("conversation.add", conversationId=cid, userIds=[u[2]])
        conv = (await c[2].event("conversation"))["conversation"]
        assert conv["name"] == "team 2" and u[2] in conv["members"]
        await c[2].request("message.send", conversationId=cid, clientId="hey", text="hey")
        await c[1].request("conversation.leave", conversationId=cid)
        with pytest.raises(ChatError):
            await c[1].request("message.send", conversationId=cid, clientId="gone", text="still here?")
        await c[0].request("conversation.remove", conversationId=cid, userId=u[2])
        with pytest.raises(ChatError):
            await c[2].request("history", conversationId=cid)
        for x in c:
            await x.close()
    asyncio.run(run())


def test_sequence_numbers_are_gap_free_under_concurrent_senders_on_two_instances(servers):
    a_srv, b_srv = servers
    senders = [uid(f"s{i}") for i in range(6)]

    async def run():
        clients = [await client(a_srv if i % 2 == 0 else b_srv, s) for i, s in enumerate(senders)]
        cid = (await clients[0].request("conversation.create", name="hammer", members=senders[1:]))["conversation"]["conversationId"]

        async def hammer(c, n):
            return await asyncio.gather(*[c.request("message.send", conversationId=cid, clientId=f"{n}-{k}", text=f"{n}/{k}")
                                          for k in range(25)])
        acks = await asyncio.gather(*[hammer(c, i) for i, c in enumerate(clients)])
        seqs = sorted(a["seq"] for batch in acks for a in batch)
        assert seqs == list(range(1, 151)), seqs
        for c in clients:
            await c.close()
    asyncio.run(run())
    stored = sorted(m["seq"] for m in a_srv.db.messages.find({"conversationId": {"$regex": "^g_"}}))
    assert stored == list(range(1, 151))


def test_deleted_sender_is_marked_in_history(servers):
    import json as _json
    from conftest import fixture_bytes
    from test_webhooks import post, signed_headers
    a_srv, _ = servers
    john = _json.loads(fixture_bytes("user.deleted.json"))["data"]["id"]
    bob = uid("bob")

    async def run():
        j, b = await client(a_srv, john), await client(a_srv, bob)
        cid = (await b.request("conversation.direct", userId=john))["conversation"]["conversationId"]
        await j.request("message.send", conversationId=cid, clientId="last", text="bye")
        body = fixture_bytes("user.deleted.json")
        assert post(a_srv, body, signed_headers(body))[0] == 200
        history = await b.request("history", conversationId=cid)
        assert history["messages"][0]["senderDeleted"] is True and history["messages"][0]["text"] == "bye"
        await b.close()
    asyncio.run(run())


def test_a_conversation_stored_before_heads_goes_on_without_a_gap_from_two_instances(servers):
    """A message writes the conversation's head (`conversation_heads`: lastSeq, lastMessage, activity),
    not the conversation document. A conversation an earlier version stored keeps its counter and
    preview on the conversation document and has no head: its next messages continue that counter,
    from both instances at once, exactly once each, and every reader (list, sync, read, edits of the
    last message) sees the head from then on."""
    a_srv, b_srv = servers
    senders = [uid(f"s{i}") for i in range(4)]

    async def run():
        clients = [await client(a_srv if i % 2 == 0 else b_srv, s) for i, s in enumerate(senders)]
        cid = (await clients[0].request("conversation.create", name="legacy", members=senders[1:]))["conversation"]["conversationId"]
        # What the previous version left: three messages, their counter and preview on the conversation.
        db = a_srv.db
        old = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        db.messages.insert_many([{"_id": f"m_legacy{n}", "conversationId": cid, "seq": n, "senderId": senders[0],
                                  "clientId": f"legacy-{n}", "text": f"old {n}", "createdAt": old, "deleted": False}
                                 for n in (1, 2, 3)])
        db.conversations.update_one({"_id": cid}, {"$set": {"lastSeq": 3, "updatedAt": old, "lastMessage": {
            "messageId": "m_legacy3", "seq": 3, "senderId": senders[0], "text": "old 3", "deleted": False, "createdAt": old}}})
        assert db.conversation_heads.count_documents({"_id": cid}) == 0
        # Its preview follows an edit while it has no head.
        await clients[0].request("message.edit", conversationId=cid, messageId="m_legacy3", text="old 3, edited")
        listed = (await clients[1].request("conversations.list", limit=10))["conversations"][0]
        assert listed["lastSeq"] == 3 and listed["lastMessage"]["text"] == "old 3, edited"

        # Both instances at once, each sender several messages and one resend of the same clientId.
        async def hammer(c, n):
            acks = await asyncio.gather(*[c.request("message.send", conversationId=cid, clientId=f"{n}-{k}", text=f"{n}/{k}")
                                          for k in range(10)])
            again = await c.request("message.send", conversationId=cid, clientId=f"{n}-0", text="resent")
            assert again == acks[0]
            return acks
        acks = [a for batch in await asyncio.gather(*[hammer(c, i) for i, c in enumerate(clients)]) for a in batch]
        assert sorted(a["seq"] for a in acks) == list(range(4, 44))
        stored = [m["seq"] for m in db.messages.find({"conversationId": cid}).sort("seq", 1)]
        assert stored == list(range(1, 44)), "no gap, no duplicate"
        last = max(acks, key=lambda a: a["seq"])
        head = db.conversation_heads.find_one({"_id": cid})
        assert head["lastSeq"] == 43 and head["lastMessage"]["messageId"] == last["messageId"]
        assert db.conversations.find_one({"_id": cid})["lastSeq"] == 3, "the conversation document is not written by messages"

        reader = clients[3]
        listed = (await reader.request("conversations.list", limit=10))["conversations"][0]
        assert listed["lastSeq"] == 43 and listed["lastMessage"]["messageId"] == last["messageId"]
        assert listed["updatedAt"] > "2026-01-02"
        synced = (await reader.request("sync", positions={cid: 40}, limit=10))["conversations"]
        assert [m["seq"] for m in synced[0]["messages"]] == [41, 42, 43] and synced[0]["conversation"]["lastSeq"] == 43
        assert (await reader.request("sync", positions={cid: 43}))["conversations"] == []
        assert (await reader.request("read", conversationId=cid, seq=999))["seq"] == 43   # capped at the head's lastSeq
        # Deleting the last message updates the head's preview.
        sender = clients[int(last["clientId"].split("-")[0])]
        await sender.request("message.delete", conversationId=cid, messageId=last["messageId"])
        listed = (await reader.request("conversations.list", limit=10))["conversations"][0]
        assert listed["lastMessage"]["deleted"] is True and listed["lastMessage"]["text"] is None
        for c in clients:
            await c.close()
    asyncio.run(run())


def test_a_batch_into_many_conversations_is_one_events_record_and_reaches_the_other_instance(servers):
    """A message batch writes one `events` record for all its conversations (each entry with its own
    recipients, frames and seqs); the other instance delivers every message of it to the right
    members, once each."""
    a_srv, b_srv = servers
    pairs = 6
    senders, receivers = [uid(f"s{i}") for i in range(pairs)], [uid(f"r{i}") for i in range(pairs)]

    async def run():
        on_b = [await client(b_srv, r) for r in receivers]
        on_a = [await client(a_srv, s) for s in senders]
        cids = [(await c.request("conversation.direct", userId=r))["conversation"]["conversationId"] for c, r in zip(on_a, receivers)]
        for rounds in range(3):
            acks = await asyncio.gather(*[c.request("message.send", conversationId=cid, clientId=f"k{rounds}", text=f"{cid} {rounds}")
                                          for c, cid in zip(on_a, cids)])
            assert [a["seq"] for a in acks] == [rounds + 1] * pairs
        for r, cid in zip(on_b, cids):
            got = await r.messages(3)
            assert [(m["conversationId"], m["seq"], m["text"]) for m in got] == [(cid, n + 1, f"{cid} {n}") for n in range(3)]
            with pytest.raises(asyncio.TimeoutError):
                await r.event("message", timeout=0.5)   # each once, and nobody else's
        for c in on_a + on_b:
            await c.close()
    asyncio.run(run())
    records = list(a_srv.db.events.find({"conversations": {"$exists": True}}))
    batches = a_srv.metrics()[("chat_message_batches_total", ())]
    assert len(records) == batches, "one record per committed batch"
    entries = [e for r in records for e in r["conversations"]]
    assert sum(len(e["frames"]) for e in entries) == 3 * pairs
    assert all(e["recipients"] == sorted(e["recipients"]) and len(e["recipients"]) == 2 for e in entries)
