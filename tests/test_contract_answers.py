"""The answers protocol/README.md gives to questions a client author would otherwise have to guess,
each checked against a running server (websockets, tokens from PyJWT, the database read and set
with pymongo)."""
import asyncio
import datetime
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from test_protocol import EXAMPLES, Peer, direct_id, keys, live, load_json, open_ws, recv  # noqa: F401 (fixtures)

ADA, BOB, CY = "user_ans_ada", "user_ans_bob", "user_ans_cy"


def test_a_frame_without_type_is_bad_request_and_an_unknown_type_is_unknown_type(live, keys):
    async def run():
        ws = await open_ws(live)
        for authenticated in (False, True):
            for raw, code in [('{"id": "9"}', "bad_request"), ('{"type": null, "id": "9"}', "bad_request"),
                              ('{"type": 5, "id": "9"}', "bad_request"), ('{"type": "typo", "id": "8"}', "unknown_type")]:
                await ws.send(raw)
                error = await recv(ws)
                assert (error["type"], error["code"], error["id"]) == ("error", code, json.loads(raw)["id"]), (raw, error)
            if not authenticated:
                await ws.send(json.dumps({"type": "auth", "id": "a", "token": keys.token(ADA)}))
                assert (await recv(ws))["type"] == "welcome"
        await ws.close()

    asyncio.run(run())


def test_the_error_examples_are_what_the_server_sends(live, keys):
    # examples/server.error.unknown_type.json once named a defined type ('typing') as unknown.
    async def run():
        ws = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token(ADA)})
        await recv(ws)
        for name, sent in [("server.error.unknown_type.json", {"type": "typo", "id": "8"}),
                           ("server.error.bad_request.json", {"id": "9", "userId": "user_b"})]:
            await ws.send(json.dumps(sent))
            assert await recv(ws) == load_json(EXAMPLES / name)["frame"], name
        await ws.close()

    asyncio.run(run())


def test_conversation_add_checks_the_conversation_before_the_users(live, keys):
    """A direct conversation cannot be extended, whoever is named: `bad_request`, not `not_found` for
    an unknown user; a non-member gets `forbidden` before anything about the users."""
    async def run():
        ada, bob, cy = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB, CY)]
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]
        group = (await ada.call("conversation.create", name="crew", members=[BOB]))["conversation"]["conversationId"]
        nobody = "user_never_seen_anywhere"
        assert await ada.refused("conversation.add", conversationId=dm, userIds=[nobody]) == "bad_request"
        assert await ada.refused("conversation.add", conversationId=dm, userIds=[CY]) == "bad_request"
        assert await cy.refused("conversation.add", conversationId=group, userIds=[nobody]) == "forbidden"
        assert await cy.refused("conversation.add", conversationId="g_" + "0" * 32, userIds=[nobody]) == "not_found"
        assert await ada.refused("conversation.add", conversationId=group, userIds=[nobody]) == "not_found"
        assert await ada.refused("conversation.add", conversationId=group, userIds=[BOB]) == "bad_request"
        assert (await ada.call("conversation.add", conversationId=group, userIds=[CY]))["conversation"]["members"] == [ADA, BOB, CY]
        for peer in (ada, bob, cy):
            await peer.close()

    asyncio.run(run())


async def pipelined(peer, *frames):
    """Sends the frames in this order without waiting, then waits for each reply: the server sees
    them one right after the other, however slow the database is today."""
    futures = []
    for frame in frames:
        frame = {**frame, "id": f"{peer.user}#{next(peer.ids)}"}
        futures.append(asyncio.get_running_loop().create_future())
        peer.pending[frame["id"]] = futures[-1]
        await peer.ws.send(json.dumps(frame))
    return [await asyncio.wait_for(f, 15) for f in futures]


def test_a_refused_typing_starts_the_two_second_window_and_a_dropped_one_does_not(live, keys):
    async def run():
        ada, bob, cy = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB, CY)]
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]
        # Refused (not a member, unknown conversation), then dropped without any check within 2 s:
        # the window bounds the database work a connection causes, whatever the outcome.
        for conversation, code in [(dm, "forbidden"), ("g_" + "1" * 32, "not_found")]:
            typing = {"type": "typing", "conversationId": conversation}
            refused, dropped = await pipelined(cy, typing, typing)
            assert (refused["type"], refused.get("code")) == ("error", code), refused
            assert (dropped["type"], dropped.get("data")) == ("ok", {"sent": False}), dropped

        # A dropped one does not move the window: sent at 0 s, dropped at 1 s, sent again at 2.8 s
        # (1.8 s after the dropped one). Sends are timed from here, not from replies.
        typing = {"type": "typing", "id": "t1", "conversationId": dm}
        start = time.monotonic()
        first = asyncio.ensure_future(ada.send(typing))
        await asyncio.sleep(1.0)
        second = await ada.send({**typing, "id": "t2"})
        assert (await first)["data"] == {"sent": True}
        assert second["data"] == {"sent": False}
        await bob.event("typing", lambda f: f["userId"] == ADA)
        await asyncio.sleep(max(0.0, start + 2.8 - time.monotonic()))
        assert (await ada.send({**typing, "id": "t3"}))["data"] == {"sent": True}
        for peer in (ada, bob, cy):
            await peer.close()

    asyncio.run(run())


def test_binary_messages_are_read_as_utf8_json_and_invalid_utf8_closes_with_1007(live, keys):
    async def run():
        ws = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token(ADA)})
        await recv(ws)
        await ws.send('{"type": "ping", "id": "é"}'.encode())              # binary, UTF-8: served
        assert (await recv(ws))["id"] == "é"
        # UTF-16 and UTF-32 without a byte order mark are valid UTF-8 bytes, but not UTF-8 JSON.
        for encoding in ("utf-16-le", "utf-32-le"):
            await ws.send('{"type": "ping", "id": "x"}'.encode(encoding))
            assert (await recv(ws))["code"] == "bad_json", encoding
        await ws.send(b'{"type": "ping", "id": "\xff"}')                   # binary, not UTF-8
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd.code == 1007

        ws = await open_ws(live, additional_headers={"Authorization": "Bearer " + keys.token(ADA)})
        await recv(ws)
        await ws.send(b'{"type": "ping", "id": "\xed\xa0\x80"}', text=True)   # text, a UTF-16 surrogate
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd.code == 1007

    asyncio.run(run())


def test_one_connections_messages_are_numbered_in_the_order_it_sent_them(live, keys):
    async def run():
        ada, bob = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB)]
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]
        # Sent back to back without waiting (they share batches with bob's, sent meanwhile), acked in any order.
        sends = [ada.request("message.send", conversationId=dm, clientId=f"a{i}", text=f"a{i}") for i in range(40)]
        others = [bob.request("message.send", conversationId=dm, clientId=f"b{i}", text=f"b{i}") for i in range(40)]
        acks = await asyncio.gather(*sends, *others)
        assert all(a["type"] == "ok" for a in acks), acks
        seqs = [a["data"]["seq"] for a in acks[:40]]
        assert seqs == sorted(seqs) and len(set(seqs)) == 40, seqs
        assert sorted(a["data"]["seq"] for a in acks) == list(range(1, 81))
        bob_seqs = [a["data"]["seq"] for a in acks[40:]]
        assert bob_seqs == sorted(bob_seqs), bob_seqs
        for peer in (ada, bob):
            await peer.close()

    asyncio.run(run())


def test_internal_stores_nothing_so_one_resend_with_the_same_client_id_is_safe(live, keys):
    async def run():
        ada, bob = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB)]
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]
        # A server-side fault: a validator that refuses every head (the sequence counter) makes the
        # database refuse the batch's write.
        if "conversation_heads" not in live.db.list_collection_names():
            live.db.create_collection("conversation_heads")
        live.db.command("collMod", "conversation_heads", validator={"refuse": {"$exists": True}}, validationAction="error")
        assert await ada.refused("message.send", conversationId=dm, clientId="k1", text="hello") == "internal"
        assert live.db.messages.count_documents({"conversationId": dm}) == 0
        live.db.command("collMod", "conversation_heads", validator={})
        first = await ada.call("message.send", conversationId=dm, clientId="k1", text="hello")
        again = await ada.call("message.send", conversationId=dm, clientId="k1", text="hello")
        assert first == again and first["seq"] == 1
        assert live.db.messages.count_documents({"conversationId": dm}) == 1
        for peer in (ada, bob):
            await peer.close()

    asyncio.run(run())


def test_last_message_always_says_whether_it_is_deleted(live, keys):
    async def run():
        ada, bob = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB)]
        dm = (await ada.call("conversation.direct", userId=BOB))["conversation"]["conversationId"]

        async def preview():
            listed = (await bob.call("conversations.list"))["conversations"]
            return next(c for c in listed if c["conversationId"] == dm)["lastMessage"]

        assert await preview() is None
        sent = await ada.call("message.send", conversationId=dm, clientId="p1", text="first")
        last = await preview()
        assert (last["messageId"], last["text"], last["deleted"]) == (sent["messageId"], "first", False)
        await ada.call("message.edit", conversationId=dm, messageId=sent["messageId"], text="first, edited")
        assert {k: (await preview())[k] for k in ("text", "deleted")} == {"text": "first, edited", "deleted": False}
        # A preview stored before the field existed reads the same.
        live.db.conversations.update_one({"_id": dm}, {"$unset": {"lastMessage.deleted": ""}})
        assert (await preview())["deleted"] is False
        await ada.call("message.delete", conversationId=dm, messageId=sent["messageId"])
        assert {k: (await preview())[k] for k in ("text", "deleted")} == {"text": None, "deleted": True}
        for peer in (ada, bob):
            await peer.close()

    asyncio.run(run())


def test_conversations_list_breaks_ties_by_descending_id_and_ends_without_an_empty_page(live, keys):
    async def run():
        ada, bob = [await Peer.connect(live, keys.token(u)) for u in (ADA, BOB)]
        groups = [(await ada.call("conversation.create", name=f"g{i}", members=[BOB]))["conversation"]["conversationId"]
                  for i in range(3)]
        # The same updatedAt for all three (to the millisecond, as stored): only the id orders them.
        tied = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
        live.db.conversations.update_many({"_id": {"$in": groups}}, {"$set": {"updatedAt": tied}})
        expected = sorted(groups, reverse=True)

        whole = await ada.call("conversations.list", limit=3)              # exactly full, and the last
        assert [c["conversationId"] for c in whole["conversations"]] == expected and whole["next"] is None
        for limit, pages in [(1, [[0], [1], [2]]), (2, [[0, 1], [2]])]:
            seen, before = [], None
            for n, page_items in enumerate(pages):
                page = await ada.call("conversations.list", limit=limit, **({"before": before} if before else {}))
                assert [c["conversationId"] for c in page["conversations"]] == [expected[i] for i in page_items]
                last = n == len(pages) - 1
                assert (page["next"] is None) == last, (limit, n, page["next"])   # no trailing empty page
                seen += page["conversations"]
                before = page["next"]
            assert [c["conversationId"] for c in seen] == expected
        for peer in (ada, bob):
            await peer.close()

    asyncio.run(run())
