"""Profile fields from Clerk's webhooks are capped (cut at a UTF-8 boundary, not refused), and the
directory matches names by substring but an email only as the whole address."""
import asyncio
import json
import uuid

import pytest

from chat_client import Client
from conftest import Server, fixture_bytes
from jwt_keys import Issuer
from test_webhooks import deliver

ISSUER = Issuer()


@pytest.fixture
def server(mongo_uri):
    s = Server(mongo_uri, env=ISSUER.env())
    yield s
    s.stop()


def user_event(clerk_id, **fields):
    """The fixture `user.created`, with this id and these profile fields (Clerk's snake_case names)."""
    event = json.loads(fixture_bytes("user.created.json"))
    data = event["data"]
    data["id"] = clerk_id
    if "email" in fields:
        data["email_addresses"][0]["email_address"] = fields.pop("email")
    data.update(fields)
    return json.dumps(event, ensure_ascii=False).encode()


def test_a_900_kb_username_is_stored_cut_to_64_bytes_at_a_character_boundary(server):
    clerk_id = "user_" + uuid.uuid4().hex
    # "ab" + "€" (3 bytes) * 300,000: the 64-byte cap falls inside the 21st euro sign.
    username = "ab" + "€" * 300_000
    body = user_event(clerk_id, username=username, first_name="Ω" * 1000, last_name="ok",
                      image_url="https://img.example/" + "x" * 5000, email="e" * 400 + "@example.com")
    assert len(body) > 900_000
    status, answer = deliver(server, body)
    assert (status, answer["status"]) == (200, "applied")      # accepted, not refused
    user = server.db.users.find_one({"clerkId": clerk_id})
    assert user["username"] == "ab" + "€" * 20 and len(user["username"].encode()) == 62
    assert user["firstName"] == "Ω" * 128                      # 2 bytes each: 256
    assert user["lastName"] == "ok"
    assert len(user["imageUrl"].encode()) == 2048 and user["imageUrl"].startswith("https://img.example/")
    assert len(user["email"].encode()) == 320

    async def run():
        # The directory answers with the capped profile: a small reply.
        c = await Client.connect(server.port, ISSUER.token("user_" + uuid.uuid4().hex[:10]))
        found = (await c.request("users.query", search="ab€€"))["users"]
        assert [u["userId"] for u in found] == [clerk_id] and found[0]["username"] == user["username"]
        await c.close()
    asyncio.run(run())


def test_the_directory_matches_an_email_only_as_the_whole_address(server):
    tag = uuid.uuid4().hex[:6]
    john = "user_john_" + tag
    status, _ = deliver(server, user_event(john, username=f"jdoe{tag}", first_name=f"Johnathan{tag}",
                                           last_name=f"Smithson{tag}", email=f"john.{tag}@example.com"))
    assert status == 200

    async def run():
        c = await Client.connect(server.port, ISSUER.token("user_" + uuid.uuid4().hex[:10]))

        async def search(text):
            return [u["userId"] for u in (await c.request("users.query", search=text))["users"]]

        # Parts of the address find nobody: no probing character by character.
        for part in ["john.", f"john.{tag}@", f"john.{tag}@exa", f"{tag}@example.com", "@example.com", "example.com",
                     f"john.{tag}@example.co"]:
            assert await search(part) == [], part
        # The whole address, in any case, finds the user.
        assert await search(f"john.{tag}@example.com") == [john]
        assert await search(f"JOHN.{tag.upper()}@Example.COM") == [john]
        # Names still match by substring, case-insensitively.
        assert await search(f"DOE{tag}") == [john]
        assert await search(f"athan{tag}") == [john]
        assert await search(f"mithson{tag.upper()}") == [john]
        await c.close()
    asyncio.run(run())
