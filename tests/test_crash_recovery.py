"""A crashed instance does not stall the survivors. An instance killed (kill -9) while its message
batch waits to commit leaves that transaction open in the database, holding the conversations it
wrote; sends into them through a survivor are answered `unavailable` (retryable, never `internal`)
while blocked, and succeed once the survivor's sweep has killed the dead instance's sessions. Resends
with the same clientId are stored exactly once, without a gap in the sequence."""
import asyncio
import signal
import time
import uuid

import subprocess

import pymongo
import pytest

import conftest
from chat_client import ChatError, Client
from conftest import Mongo, Server
from jwt_keys import Issuer

ISSUER = Issuer()
PAIRS = 8


def uid(name):
    return f"user_{name}_{uuid.uuid4().hex[:8]}"


class MongoWithFailPoints(Mongo):
    """The embedded MongoDB with `configureFailPoint` (mongod's enableTestCommands), to hold one
    instance's commits at will."""

    def start(self):
        self.proc = subprocess.Popen(
            [conftest.SECANTUSD, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage,
             "--log-level", "WARNING", "--enable-test-commands"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conftest._children.append(self.proc)
        assert conftest.wait_port(self.port), "embedded MongoDB did not start"


@pytest.fixture
def mongo_uri():
    # A fresh one that takes writes (SecantusDB can wedge at start: conftest's `mongo_uri` does the same).
    m = MongoWithFailPoints()
    for _ in range(2):
        if conftest.answers(m.uri):
            break
        m.remove()
        m = MongoWithFailPoints()
    yield m.uri
    m.remove()


def fail_commits(admin, app, **data):
    admin.command({"configureFailPoint": "failCommand", **data.pop("mode"),
                   "data": {"failCommands": ["commitTransaction"], "appName": app, "blockConnection": True, **data}})


def test_kill_9_with_a_batch_in_flight_blocks_sends_briefly_and_resends_are_stored_once(mongo_uri):
    env = {**ISSUER.env(), "PRESENCE_INSTANCE_TIMEOUT_SECONDS": "6", "PRESENCE_HEARTBEAT_SECONDS": "2"}
    db_name = "py_" + uuid.uuid4().hex[:12]
    app = "victim-" + uuid.uuid4().hex[:6]
    # The victim names itself to the database, so that a fail point can hold its commits only.
    a = Server(mongo_uri, env={**env, "MONGODB_URI": f"{mongo_uri}/{db_name}?appName={app}"}, db_name=db_name)
    b = Server(mongo_uri, env=env, db_name=db_name)
    admin = pymongo.MongoClient(mongo_uri, directConnection=True, serverSelectionTimeoutMS=5000, socketTimeoutMS=10000).admin
    senders, receivers = [uid(f"s{i}") for i in range(PAIRS)], [uid(f"r{i}") for i in range(PAIRS)]
    answers = {}       # sender -> ["unavailable", ..., "ok"]
    try:
        async def run():
            token = lambda u: ISSUER.token(u, ttl=600)
            on_b = [await Client.connect(b.port, token(r)) for r in receivers]
            on_a = [await Client.connect(a.port, token(s)) for s in senders]
            cids = [(await c.request("conversation.direct", userId=r))["conversation"]["conversationId"]
                    for c, r in zip(on_a, receivers)]
            for c, cid in zip(on_a, cids):
                await c.request("message.send", conversationId=cid, clientId="first", text="before the crash")
            warm_sender, warm_peer = uid("w"), uid("wp")
            peer = await Client.connect(b.port, token(warm_peer))
            warm = await Client.connect(a.port, token(warm_sender))
            warm_cid = (await warm.request("conversation.direct", userId=warm_peer))["conversation"]["conversationId"]

            # 1. The victim's next commit waits 2.5 s: its batcher is busy, so the 8 sends made
            #    meanwhile queue up and go together in its next transaction.
            fail_commits(admin, app, mode={"mode": {"times": 1}}, blockTimeMS=2500)
            warm_ack = asyncio.ensure_future(warm.request("message.send", conversationId=warm_cid, clientId="w", text="w"))
            await asyncio.sleep(0.5)
            sends = [asyncio.ensure_future(c.request("message.send", conversationId=cid, clientId="crash", text="in flight"))
                     for c, cid in zip(on_a, cids)]
            # 2. That transaction's commit never returns: it is still open when the instance dies.
            fail_commits(admin, app, mode={"mode": "alwaysOn"}, blockTimeMS=120_000, errorCode=8)
            await warm_ack
            await asyncio.sleep(1.5)
            a.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            a.proc.wait()
            admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            for s in sends:
                s.cancel()

            # 3. Through the survivor: resends into the blocked conversations are answered `unavailable`
            #    until the survivor's sweep kills the dead instance's sessions; a conversation the crash
            #    did not touch is only held back while a blocked batch waits out its retry budget.
            other = await Client.connect(b.port, token(uid("o")))
            other_cid = (await other.request("conversation.direct", userId=warm_peer))["conversation"]["conversationId"]

            async def resend(sender, cid):
                c = await Client.connect(b.port, token(sender))
                answers[sender] = []
                while time.monotonic() - killed < 120:
                    try:
                        ack = await c.request("message.send", conversationId=cid, clientId="crash", text="in flight")
                        answers[sender].append("ok")
                        await c.close()
                        return ack, time.monotonic() - killed
                    except ChatError as e:
                        answers[sender].append(e.code)
                        assert e.code == "unavailable", f"{sender}: {e}"
                        await asyncio.sleep(0.5)
                raise AssertionError(f"{sender} never stored: {answers[sender]}")

            resends = asyncio.gather(*(resend(s, cid) for s, cid in zip(senders, cids)))
            await asyncio.sleep(1.0)       # the survivor's batcher is now waiting out the conflicts
            t = time.monotonic()
            await other.request("message.send", conversationId=other_cid, clientId="o1", text="unaffected")
            unaffected = time.monotonic() - t
            results = await resends
            return cids, results, unaffected

        cids, results, unaffected = asyncio.run(run())
        recovered = max(t for _, t in results)
        print(f"\nresends stored {recovered:.1f} s after the kill; an unaffected send took {unaffected:.2f} s; "
              f"answers: {[(v, round(t, 1)) for v, (_, t) in zip(answers.values(), results)]}")
        assert all(v[-1] == "ok" and set(v[:-1]) <= {"unavailable"} for v in answers.values()), answers
        assert any("unavailable" in v for v in answers.values()), "the crash left nothing blocked: the test did not test"
        assert unaffected < 10, "a conversation the crash did not touch was held back"
        for cid, (ack, _) in zip(cids, results):
            stored = list(b.db.messages.find({"conversationId": cid}).sort("seq", 1))
            assert [m["seq"] for m in stored] == [1, 2], "no gap, no duplicate sequence number"
            assert [m["clientId"] for m in stored] == ["first", "crash"] and ack["seq"] == 2
            assert b.db.conversation_heads.find_one({"_id": cid})["lastSeq"] == 2
    finally:
        admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        admin.client.close()
        a.stop()
        b.stop()
