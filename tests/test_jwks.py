"""Keys from a JWKS URL (as with CLERK_PUBLISHABLE_KEY / CLERK_JWKS_URL): fetched, cached, and fetched
again when a token names an unknown kid (Clerk rotated its keys)."""
import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets

from conftest import Server
from jwt_keys import Issuer


def jwk(issuer, kid):
    numbers = issuer.key.public_key().public_numbers()

    def b64(n):
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)}


def serve_jwks(served, hits, slow_after_first=0.0):
    """A JWKS endpoint serving `served` (changed by the test), recording each fetch in `hits`; fetches
    after the first take `slow_after_first` seconds. Returns the HTTP server (shut it down)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = json.dumps(served).encode()
            if len(hits) > 1 and slow_after_first:
                threading.Event().wait(slow_after_first)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def jwks_server(mongo_uri, httpd):
    return Server(mongo_uri, env={"CLERK_JWKS_URL": f"http://127.0.0.1:{httpd.server_port}/.well-known/jwks.json"})


async def auth(port, token, timeout):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_jwks_keys_are_fetched_and_refetched_on_rotation(mongo_uri):
    first, second = Issuer(), Issuer()
    served = {"keys": [jwk(first, "ins_key_1")]}
    hits = []

    httpd = serve_jwks(served, hits)
    server = jwks_server(mongo_uri, httpd)
    try:
        def connect(token):
            return auth(server.port, token, 10)

        assert asyncio.run(connect(first.token("user_jwks", headers={"kid": "ins_key_1"})))["type"] == "welcome"
        fetches = len(hits)
        assert fetches >= 1
        # Cached: a second connection does not fetch again.
        assert asyncio.run(connect(first.token("user_jwks", headers={"kid": "ins_key_1"})))["type"] == "welcome"
        assert len(hits) == fetches
        # Rotation: the new kid is unknown, the JWKS is fetched again, the token verifies.
        served["keys"] = [jwk(first, "ins_key_1"), jwk(second, "ins_key_2")]
        assert asyncio.run(connect(second.token("user_jwks", headers={"kid": "ins_key_2"})))["type"] == "welcome"
        assert len(hits) == fetches + 1
        # A kid nobody serves is refused without hammering the JWKS endpoint.
        stranger = Issuer()
        for _ in range(3):
            frame = asyncio.run(connect(stranger.token("user_jwks", headers={"kid": "ins_key_9"})))
            assert frame["type"] == "error" and frame["code"] == "token_invalid"
        assert len(hits) <= fetches + 2
    finally:
        server.stop()
        httpd.shutdown()


def test_a_reconnect_storm_waiting_for_new_keys_shares_one_fetch(mongo_uri):
    """After a key rotation, every connection naming the new kid waits for the same JWKS fetch: 50 of
    them at once, while the endpoint takes 1 s to answer, cost one fetch, and all are welcomed."""
    first, second = Issuer(), Issuer()
    served = {"keys": [jwk(first, "ins_key_1")]}
    hits = []

    httpd = serve_jwks(served, hits, slow_after_first=1.0)   # slow enough that every connection arrives while it runs
    server = jwks_server(mongo_uri, httpd)
    try:
        def connect(token):
            return auth(server.port, token, 20)

        assert asyncio.run(connect(first.token("user_jwks_0", headers={"kid": "ins_key_1"})))["type"] == "welcome"
        fetches = len(hits)
        served["keys"] = [jwk(first, "ins_key_1"), jwk(second, "ins_key_2")]

        async def storm():
            return await asyncio.gather(*(connect(second.token(f"user_jwks_{n}", headers={"kid": "ins_key_2"}))
                                          for n in range(50)))
        frames = asyncio.run(storm())
        assert [f["type"] for f in frames] == ["welcome"] * 50
        assert len(hits) == fetches + 1, f"{len(hits) - fetches} fetches for 50 waiting connections"
    finally:
        server.stop()
        httpd.shutdown()
