"""https and wss on the same port when a certificate is configured."""
import asyncio
import json
import ssl
import subprocess
import tempfile
import urllib.request

import websockets

from conftest import Server
from jwt_keys import Issuer


def self_signed(tmp):
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_https_and_wss_on_one_port(mongo_uri):
    issuer = Issuer()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(tmp)
        server = Server(mongo_uri, env={**issuer.env(), "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key})
        try:
            ctx = ssl.create_default_context(cafile=cert)
            with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/healthz", context=ctx, timeout=10) as r:
                assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}

            async def run():
                async with websockets.connect(f"wss://127.0.0.1:{server.port}/ws", ssl=ctx) as ws:
                    await ws.send(json.dumps({"type": "auth", "token": issuer.token("user_tls")}))
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
            asyncio.run(run())
            # Plain http on the TLS port is not served.
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
                assert False, "plain http answered on the TLS port"
            except Exception:
                pass
        finally:
            server.stop()
