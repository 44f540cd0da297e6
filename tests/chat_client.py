"""A small asyncio client for the documented protocol: requests correlated by id, events queued."""
import asyncio
import itertools
import json

import websockets

_ids = itertools.count(1)


class ChatError(Exception):
    def __init__(self, frame):
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = frame.get("code")


class Client:
    def __init__(self, ws, welcome):
        self.ws = ws
        self.welcome = welcome
        self.events = asyncio.Queue()
        self.pending = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port, token):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat.v1"], max_queue=None)
        await ws.send(json.dumps({"type": "auth", "id": "auth", "token": token}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome)

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                waiter = self.pending.pop(frame.get("id"), None) if frame.get("type") in ("ok", "error") else None
                if waiter:
                    waiter.set_result(frame)
                else:
                    await self.events.put(frame)
        except websockets.ConnectionClosed:
            pass

    async def request(self, type_, **fields):
        rid = str(next(_ids))
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send(json.dumps({"type": type_, "id": rid, **fields}))
        frame = await asyncio.wait_for(fut, 15)
        if frame["type"] == "error":
            raise ChatError(frame)
        return frame["data"]

    async def event(self, type_, timeout=10):
        """The next event of that type (others are skipped)."""
        while True:
            frame = await asyncio.wait_for(self.events.get(), timeout)
            if frame["type"] == type_:
                return frame

    async def messages(self, count, timeout=15):
        return [(await self.event("message", timeout))["message"] for _ in range(count)]

    async def close(self):
        await self.ws.close()
        self.reader.cancel()
