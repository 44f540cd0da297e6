"""What a connection owns is released when it closes: thousands of authenticated connect/close cycles
leave no live session behind (`chat_ws_sessions_live` back to zero) and the server's RSS flat."""
import asyncio
import json

import websockets

from conftest import Server
from jwt_keys import Issuer

ISSUER = Issuer()
USERS = [f"user_lifetime_{i:03d}" for i in range(40)]


def rss_kib(server):
    with open(f"/proc/{server.proc.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def cycle(server, token):
    for _ in range(5):
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["chat.v1"]) as ws:
            await ws.send(json.dumps({"type": "auth", "id": "a", "token": token}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if reply.get("code") != "unavailable":   # a loaded database may refuse a registration: reconnect
            break
    assert reply["type"] == "welcome", reply


async def cycles(server, count, tokens, parallel=40):
    for start in range(0, count, parallel):
        await asyncio.gather(*(cycle(server, tokens[(start + i) % len(tokens)]) for i in range(min(parallel, count - start))))


def live_sessions(server):
    return server.metrics()[("chat_ws_sessions_live", ())]


def settled(server, timeout=30):
    """Waits until no session is alive (closes finish on the service thread, connect jobs on workers)."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline and live_sessions(server) != 0:
        time.sleep(0.2)
    return live_sessions(server)


def test_closed_connections_release_their_sessions_and_memory(mongo_uri):
    server = Server(mongo_uri, env={**ISSUER.env(), "LOG_LEVEL": "info"})
    try:
        tokens = [ISSUER.token(uid, ttl=3600) for uid in USERS]

        async def run():
            ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["chat.v1"])
            await ws.send(json.dumps({"type": "auth", "id": "a", "token": tokens[0]}))
            await ws.recv()
            assert live_sessions(server) == 1   # the gauge counts a session that is alive
            await ws.close()
        asyncio.run(run())
        assert settled(server) == 0

        # Warm-up: allocator arenas, dictionaries and caches reach their working size.
        asyncio.run(cycles(server, 400, tokens))
        assert settled(server) == 0
        before = rss_kib(server)
        asyncio.run(cycles(server, 2000, tokens))
        assert settled(server) == 0
        grown = rss_kib(server) - before
        # Kept per connection before: 2.4 KiB (4,800 KiB here); 1.3 KiB of it was libmongoc reply structs.
        assert grown < 1500, f"RSS grew {grown} KiB over 2,000 connect/close cycles"
        assert server.metrics()[("chat_ws_connections", ())] == 0
    finally:
        server.stop()
