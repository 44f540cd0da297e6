"""chat-server's development tools as a newcomer meets them: `make run` makes a local webhook secret
(never in production) that `send-webhook` finds, and a missing setting or a server out of reach is
one plain line and a non-zero exit (no usage text, no Foundation error dump)."""
import os
import stat
import subprocess

from conftest import ROOT, SERVER_BIN, Server, free_port

FIXTURE = str(ROOT / "Tests" / "Fixtures" / "clerk" / "user.created.json")


def bare_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLERK_") and k not in ("PORT", "MONGODB_URI", "NODE_ENV")}
    env.update(extra)
    return env


def tool(*args, cwd, **env):
    return subprocess.run([SERVER_BIN, *args], cwd=cwd, env=bare_env(**env), capture_output=True, text=True, timeout=60)


def one_line(result, code, start):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    assert "Usage" not in result.stderr and "Error Domain" not in result.stderr and "NSError" not in result.stderr


def dev_keys_script(directory, **env):
    """scripts/dev-keys.sh as run.sh sources it, with the built chat-server standing in for the release one."""
    release = directory / ".build" / "release"
    release.mkdir(parents=True, exist_ok=True)
    if not (release / "chat-server").exists():
        (release / "chat-server").symlink_to(SERVER_BIN)
    script = (f'ROOT="{directory}"; cd "$ROOT"; source "{ROOT}/scripts/dev-keys.sh"; '
              'echo "SECRET=${CLERK_WEBHOOK_SECRET:-}"')
    return subprocess.run(["bash", "-c", script], env=bare_env(**env), capture_output=True, text=True, timeout=60)


def test_make_run_creates_a_webhook_secret_in_development_only(tmp_path):
    dev = dev_keys_script(tmp_path)
    assert dev.returncode == 0, dev.stderr
    secret_file = tmp_path / ".dev-keys" / "webhook-secret"
    secret = secret_file.read_text().strip()
    assert secret.startswith("whsec_") and f"SECRET={secret}" in dev.stdout
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "local secret in .dev-keys/webhook-secret" in dev.stdout and "CLERK_WEBHOOK_SECRET=whsec_" in dev.stdout
    again = dev_keys_script(tmp_path)
    assert f"SECRET={secret}" in again.stdout                   # made once, kept

    configured = tmp_path / "configured"
    configured.mkdir()
    (configured / ".env").write_text("CLERK_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    dev = dev_keys_script(configured)
    assert "verified with CLERK_WEBHOOK_SECRET from .env" in dev.stdout and "SECRET=\n" in dev.stdout
    assert not (configured / ".dev-keys" / "webhook-secret").exists()

    production = tmp_path / "production"
    production.mkdir()
    dev = dev_keys_script(production, NODE_ENV="production")
    assert "SECRET=\n" in dev.stdout and not (production / ".dev-keys").exists(), dev.stdout


def test_send_webhook_signs_with_the_development_secret_the_server_uses(mongo_uri, tmp_path):
    made = tool("dev-keys", "--webhook-secret", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    server = Server(mongo_uri, env={"CLERK_WEBHOOK_SECRET": secret})
    try:
        sent = tool("send-webhook", FIXTURE, cwd=tmp_path, PORT=str(server.port))   # finds .dev-keys/webhook-secret
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith('200 {"status":"applied"}'), sent.stdout
        assert server.db.users.find_one({"clerkId": "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef"})["username"] == "john_doe"
        # Another secret than the server's: its 400, in one line, with a hint.
        wrong = tool("send-webhook", FIXTURE, cwd=tmp_path, PORT=str(server.port),
                     CLERK_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        one_line(wrong, 1, "chat-server send-webhook: the server answered 400")
        assert "CLERK_WEBHOOK_SECRET" in wrong.stderr
    finally:
        server.stop()


def test_a_missing_setting_or_an_unreachable_server_is_one_line(tmp_path, mongo_uri):
    one_line(tool("send-webhook", FIXTURE, cwd=tmp_path), 2, "chat-server send-webhook: no webhook secret: set CLERK_WEBHOOK_SECRET")
    one_line(tool("send-webhook", FIXTURE, cwd=tmp_path, CLERK_WEBHOOK_SECRET="not-a-secret"), 2,
             "chat-server send-webhook: CLERK_WEBHOOK_SECRET: ")
    port = free_port()
    down = tool("send-webhook", FIXTURE, cwd=tmp_path, PORT=str(port), CLERK_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    one_line(down, 1, f"chat-server send-webhook: cannot reach chat-server at http://127.0.0.1:{port} "
                      "(connection refused: is chat-server running there?)")

    one_line(tool("backfill-users", cwd=tmp_path), 2, "chat-server backfill-users: CLERK_SECRET_KEY is not set")
    nowhere = f"mongodb://127.0.0.1:{free_port()}/x?serverSelectionTimeoutMS=1000"
    one_line(tool("backfill-users", cwd=tmp_path, CLERK_SECRET_KEY="sk_test", MONGODB_URI=nowhere), 1,
             "chat-server backfill-users: cannot reach MongoDB at mongodb://127.0.0.1:")
    clerk_down = tool("backfill-users", "--api-url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, CLERK_SECRET_KEY="sk_test",
                      MONGODB_URI=f"{mongo_uri}/tools_backfill")
    one_line(clerk_down, 1, "chat-server backfill-users: cannot reach the Clerk Backend API at http://127.0.0.1:")

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    one_line(tool("mint-token", "--user", "alice", "--dir", str(blocked / "keys"), cwd=tmp_path), 1,
             "chat-server mint-token: cannot create the directory")
    token = tool("mint-token", "--user", "alice", cwd=tmp_path)
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
    assert tool("dev-keys", "--webhook-secret", cwd=tmp_path).stdout.startswith("whsec_")
