"""The web app as HTTP serves it: content types, caching, the Content-Security-Policy, no way out of
the app's files, and the development sign-in route that exists only with the local key pair.
(tests/test_browser.py drives the app itself in Chromium.)"""
import base64
import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, SERVER_BIN, Server
from jwt_keys import Issuer


def dev_keys(tmp_path):
    """The local key pair `make run` creates, made by the server's own tool: (directory, public PEM)."""
    directory = tmp_path / "dev-keys"
    public = subprocess.run([SERVER_BIN, "dev-keys", "--dir", str(directory)], check=True, capture_output=True, text=True).stdout
    return str(directory), public


def dev_env(tmp_path, **more):
    directory, public = dev_keys(tmp_path)
    return {"CLERK_JWT_KEY": public, "DEV_KEYS_DIR": directory, "WEB_ROOT": str(ROOT), **more}


def get(server, path, headers=None, method="GET", body=None):
    request = urllib.request.Request(server.base + path, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def post_token(server, user, content_type="application/json"):
    return get(server, "/dev/token", {"content-type": content_type}, "POST", json.dumps({"userId": user}).encode())


def csp(headers):
    return {d.split(" ")[0]: d.split(" ")[1:] for d in (p.strip() for p in headers["content-security-policy"].split(";")) if d}


def page_config(html):
    m = re.search(rb'<meta name="chat-config" content="([^"]*)">', html)
    return json.loads(m.group(1).decode().replace("&quot;", '"').replace("&amp;", "&"))


def test_the_page_and_its_files_have_types_caching_and_a_strict_policy(mongo_uri, tmp_path):
    server = Server(mongo_uri, env=dev_env(tmp_path))
    try:
        status, headers, html = get(server, "/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-cache" and re.fullmatch(r'"[0-9a-f]{16}"', headers["etag"])
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        policy = csp(headers)
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"], "development: no script from anywhere else, nothing inline"
        assert policy["style-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
        assert "'self'" in policy["connect-src"] and f"ws://127.0.0.1:{server.port}" in policy["connect-src"]
        assert not any("unsafe" in v for values in policy.values() for v in values)
        assert b"<script>" not in html and b" onclick=" not in html, "no inline script in the page"
        assert page_config(html) == {"signIn": "development", "webSocketPath": "/ws"}

        # A revalidation costs a 304 without a body.
        status, again, body = get(server, "/", {"if-none-match": headers["etag"]})
        assert status == 304 and body == b"" and again["etag"] == headers["etag"]

        # The page names its files by versioned URLs, which are cached for good; the bare URL is revalidated.
        css = re.search(rb'href="(/app\.css\?v=[0-9a-f]+)"', html).group(1).decode()
        js = re.search(rb'src="(/app\.js\?v=[0-9a-f]+)"', html).group(1).decode()
        status, h, body = get(server, css)
        assert status == 200 and h["content-type"] == "text/css; charset=utf-8" and b".bubble" in body
        assert h["cache-control"] == "public, max-age=31536000, immutable"
        status, h, body = get(server, js)
        assert status == 200 and h["content-type"] == "text/javascript; charset=utf-8"
        assert h["cache-control"] == "public, max-age=31536000, immutable"
        assert get(server, "/app.js")[1]["cache-control"] == "no-cache"
        assert get(server, "/app.js?v=0000000000")[1]["cache-control"] == "no-cache", "a stale version is not cached for good"
        assert get(server, "/favicon.svg")[1]["content-type"] == "image/svg+xml"
        status, h, body = get(server, "/lib/chat-client.js")
        assert status == 200 and h["content-type"] == "text/javascript; charset=utf-8" and b"export function createChatClient" in body
        assert get(server, "/app.js", method="POST", body=b"")[0] == 405

        # HEAD: the headers GET would send, no body, and the connection goes on.
        import http.client
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("HEAD", "/")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b"" and int(head.getheader("content-length")) == len(html)
        assert head.getheader("etag") == headers["etag"] and "content-security-policy" in {k.lower() for k in head.headers}
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"status":"ok"}'
        connection.close()
    finally:
        server.stop()


@pytest.mark.parametrize("path", [
    "/../Package.swift", "/%2e%2e/Package.swift", "/..%2fPackage.swift", "/web/index.html", "/web/../Package.swift",
    "/lib/../../Package.swift", "/lib/chat-client.d.ts", "/.env", "/%2e%2e%2f.dev-keys/private.pem", "/app.js/", "//etc/passwd",
    "/index.html%00.js",
])
def test_nothing_outside_the_apps_files_is_served(mongo_uri, tmp_path, path):
    # Files that must never be served sit where a traversal would find them.
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text('<meta name="chat-config" content="">')
    (tmp_path / "web" / ".env").write_text("SECRET=1")
    (tmp_path / "Package.swift").write_text("secret")
    (tmp_path / "web" / "link.txt").symlink_to(tmp_path / "Package.swift")
    directory, public = dev_keys(tmp_path)
    server = Server(mongo_uri, env={"CLERK_JWT_KEY": public, "DEV_KEYS_DIR": directory, "WEB_ROOT": str(tmp_path)})
    try:
        try:
            status, _, body = get(server, path)
        except ConnectionError:   # lws hangs up on a NUL in the URI: nothing served either
            status, body = 400, b""
        assert status in (400, 403, 404), (path, status)
        assert b"secret" not in body and b"SECRET" not in body and b"PRIVATE KEY" not in body
        assert get(server, "/link.txt")[0] == 404, "a symlink out of web/ is not served"
        assert get(server, "/")[0] == 200
    finally:
        server.stop()


def test_dev_token_mints_a_token_that_connects_and_lists_the_user(mongo_uri, tmp_path):
    server = Server(mongo_uri, env=dev_env(tmp_path))
    try:
        status, headers, body = post_token(server, "alice")
        assert status == 200 and headers["cache-control"] == "no-store"
        reply = json.loads(body)
        claims = json.loads(base64.urlsafe_b64decode(reply["token"].split(".")[1] + "=="))
        assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60 and reply["userId"] == "alice"
        # The user is in the directory under their name, as Clerk's user.created would put them.
        user = server.db.users.find_one({"clerkId": "alice"})
        assert user["username"] == "alice" and user["firstName"] == "Alice"
        assert post_token(server, "alice")[0] == 200, "signing in again works"

        import asyncio
        import websockets
        import websockets.exceptions

        async def connect():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws", subprotocols=["chat.v1"],
                                          origin=f"http://127.0.0.1:{server.port}") as ws:
                await ws.send(json.dumps({"type": "auth", "id": "1", "token": reply["token"]}))
                return json.loads(await asyncio.wait_for(ws.recv(), 10))
        welcome = asyncio.run(connect())
        assert welcome["type"] == "welcome" and welcome["userId"] == "alice", "the page's own origin may open the channel"

        # Hostile input is answered, not served.
        assert post_token(server, "alice", content_type="text/plain")[0] == 415, "no cross-site form posts"
        status, _, _ = get(server, "/dev/token", {"content-type": "application/json", "host": f"rebound.example:{server.port}"},
                           "POST", b'{"userId": "alice"}')
        assert status == 403, "a page on another name resolving here (DNS rebinding) gets no token"
        status, _, _ = get(server, "/dev/token", {"content-type": "application/json", "host": f"localhost:{server.port}"},
                           "POST", b'{"userId": "alice"}')
        assert status == 200
        for bad in ["", "a" * 65, "../alice", "al ice", "ali\u00e7e"]:
            assert post_token(server, bad)[0] == 400, bad
        status, _, _ = get(server, "/dev/token", {"content-type": "application/json"}, "POST", b"x" * 5000)
        assert status == 413
        assert get(server, "/dev/token")[0] == 405
    finally:
        server.stop()


def test_an_other_sites_page_still_cannot_open_the_channel(mongo_uri, tmp_path):
    server = Server(mongo_uri, env=dev_env(tmp_path))
    try:
        import asyncio
        import websockets
        import websockets.exceptions

        async def connect():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil.example"):
                pass
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            asyncio.run(connect())
    finally:
        server.stop()


def publishable_key(host):
    return "pk_test_" + base64.b64encode(f"{host}$".encode()).decode().rstrip("=")


@pytest.mark.parametrize("case", ["production", "clerk_publishable_key", "other_jwt_key", "no_dev_keys"])
def test_dev_token_does_not_exist_outside_local_development(mongo_uri, tmp_path, case):
    directory, public = dev_keys(tmp_path)
    env = {"CLERK_JWT_KEY": public, "DEV_KEYS_DIR": directory, "WEB_ROOT": str(ROOT)}
    if case == "production":
        env = {"NODE_ENV": "production", "CLERK_JWT_KEY": public, "WEB_ROOT": str(ROOT)}   # even with the dev key trusted
    elif case == "clerk_publishable_key":
        env["CLERK_PUBLISHABLE_KEY"] = publishable_key("example.clerk.accounts.dev")
    elif case == "other_jwt_key":
        env["CLERK_JWT_KEY"] = Issuer().env()["CLERK_JWT_KEY"]   # a real instance's key
    elif case == "no_dev_keys":
        env["DEV_KEYS_DIR"] = ""
    server = Server(mongo_uri, env=env, cwd=tmp_path)   # no .dev-keys in the working directory either
    try:
        status, _, body = post_token(server, "alice")
        assert status == 404, body
        assert server.db.users.count_documents({}) == 0
        status, _, html = get(server, "/")
        assert status == 200 and page_config(html)["signIn"] != "development"
    finally:
        server.stop()


def test_clerk_mode_loads_clerk_from_the_instance_and_allows_only_its_hosts(mongo_uri, tmp_path):
    host = "example.clerk.accounts.dev"
    _, public = dev_keys(tmp_path)
    server = Server(mongo_uri, env={"CLERK_PUBLISHABLE_KEY": publishable_key(host), "CLERK_JWT_KEY": public, "WEB_ROOT": str(ROOT)})
    try:
        status, headers, html = get(server, "/")
        assert status == 200
        assert page_config(html) == {"signIn": "clerk", "publishableKey": publishable_key(host), "webSocketPath": "/ws",
                                     "clerkScript": f"https://{host}/npm/@clerk/clerk-js@5/dist/clerk.browser.js"}
        policy = csp(headers)
        assert policy["script-src"] == ["'self'", f"https://{host}", "https://challenges.cloudflare.com"]
        assert f"https://{host}" in policy["connect-src"] and "https://img.clerk.com" in policy["img-src"]
        assert "'unsafe-inline'" not in policy["script-src"]
    finally:
        server.stop()


def test_a_web_root_without_the_app_stops_start_up(tmp_path):
    result = subprocess.run([SERVER_BIN, "serve", "--env-file", "/nonexistent"], capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "WEB_ROOT": str(tmp_path), "PORT": "0"})
    assert result.returncode == 2
    assert "WEB_ROOT" in result.stderr + result.stdout and "web/index.html" in result.stderr + result.stdout
