"""`chat-server backfill-users` against a local stand-in for Clerk's Backend API (real HTTP, paginated,
bearer-checked), writing into the embedded MongoDB."""
import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pymongo

from conftest import SERVER_BIN, fixture_bytes

SECRET = "sk_test_backfill"


def clerk_users(n):
    base = json.loads(fixture_bytes("user.created.json"))["data"]
    users = []
    for i in range(n):
        u = dict(base, id=f"user_backfill_{i:03d}", username=f"person{i}", updated_at=1763289000000 + i)
        users.append(u)
    return users


def serve(users, seen):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {SECRET}":
                self.send_response(401); self.end_headers(); return
            q = parse_qs(urlparse(self.path).query)
            limit, offset = int(q["limit"][0]), int(q["offset"][0])
            body = json.dumps(users[offset:offset + limit]).encode()
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


def test_backfill_copies_every_page_and_never_overwrites_newer_data(mongo_uri, tmp_path):
    users, seen = clerk_users(23), []
    httpd = serve(users, seen)
    db_name = "backfill_" + uuid.uuid4().hex[:8]
    db = pymongo.MongoClient(mongo_uri, directConnection=True)[db_name]
    # A webhook already brought a newer version of user 0.
    db.users.insert_one({"clerkId": "user_backfill_000", "username": "newer", "clerkUpdatedAt": 1763289999999,
                         "isOnline": True, "deleted": False})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLERK_")}
    env.update(MONGODB_URI=f"{mongo_uri}/{db_name}", CLERK_SECRET_KEY=SECRET)
    out = subprocess.run([SERVER_BIN, "backfill-users", "--api-url", f"http://127.0.0.1:{httpd.server_port}",
                          "--page-size", "10", "--env-file", "/nonexistent"], env=env, capture_output=True, text=True, timeout=60)
    httpd.shutdown()
    assert out.returncode == 0, out.stderr
    assert "22 applied, 1 already newer" in out.stdout
    assert len([p for p in seen if p.startswith("/v1/users")]) == 3
    assert db.users.count_documents({}) == 23
    assert db.users.find_one({"clerkId": "user_backfill_000"})["username"] == "newer"
    five = db.users.find_one({"clerkId": "user_backfill_005"})
    assert five["username"] == "person5" and five["email"] == "john@example.com" and five["isOnline"] is False
    # Running it again changes nothing; this time the API base comes from CLERK_API_URL in a .env file.
    httpd = serve(users, seen)
    env_file = tmp_path / ".env"
    env_file.write_text(f"CLERK_API_URL=http://127.0.0.1:{httpd.server_port}\n")
    before = len(seen)
    again = subprocess.run([SERVER_BIN, "backfill-users", "--page-size", "10", "--env-file", str(env_file)],
                           env=env, capture_output=True, text=True, timeout=60)
    httpd.shutdown()
    assert again.returncode == 0 and "0 applied" in again.stdout, again.stderr
    assert len(seen) == before + 3


def test_backfill_with_a_wrong_key_fails_with_one_line(mongo_uri):
    httpd = serve([], [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLERK_")}
    env.update(MONGODB_URI=f"{mongo_uri}/backfill_bad", CLERK_SECRET_KEY="sk_wrong")
    out = subprocess.run([SERVER_BIN, "backfill-users", "--api-url", f"http://127.0.0.1:{httpd.server_port}", "--env-file", "/nonexistent"],
                         env=env, capture_output=True, text=True, timeout=60)
    httpd.shutdown()
    assert out.returncode != 0
    assert "401" in out.stderr
