// Real parts for the JS client's tests: the embedded MongoDB (SecantusDB), chat-server processes,
// RS256 tokens signed with node:crypto by a key pair the server trusts (CLERK_JWT_KEY), webhooks signed
// by the official Svix library (Python), and a TCP relay that can hold back or cut a connection.
import { spawn, execFileSync } from "node:child_process";
import { generateKeyPairSync, sign, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SERVER_BIN = process.env.CHAT_SERVER_BIN || path.join(ROOT, ".build/debug/chat-server");
const SECANTUSD = process.env.SECANTUSD || path.join(ROOT, ".venv/bin/secantusd-py");
const PYTHON = path.join(ROOT, ".venv/bin/python");
export const WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const children = new Set();
// Databases and servers started here must not outlive the run, even when it is interrupted or `timeout`
// stops it (a signal skips "exit" handlers unless handled).
const reap = () => { for (const c of children) try { c.kill("SIGKILL"); } catch { /* gone */ } };
process.on("exit", reap);
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => { reap(); process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGHUP" ? 1 : 15)); });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (returned) or fails after `ms` with `what`. */
export async function until(fn, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitPort(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

export class Mongo {
  async start() {
    this.port = await freePort();
    this.storage = mkdtempSync(path.join(os.tmpdir(), "secantus-js-"));
    this.proc = spawn(SECANTUSD, ["--host", "127.0.0.1", "--port", String(this.port), "--storage-path", this.storage,
      "--log-level", "WARNING"], { stdio: "ignore" });
    children.add(this.proc);
    if (!(await waitPort(this.port, 60000))) throw new Error("the embedded MongoDB did not start");
    return this;
  }
  get uri() { return `mongodb://127.0.0.1:${this.port}`; }
  /** Whether it takes a write within a few seconds (asked with pymongo): SecantusDB 0.7.0b3 can wedge. */
  answers() {
    return new Promise((resolve) => {
      const probe = spawn(PYTHON, ["-c",
        "import sys, pymongo; c = pymongo.MongoClient(sys.argv[1], directConnection=True, serverSelectionTimeoutMS=3000, " +
        "connectTimeoutMS=3000, socketTimeoutMS=5000); c.health.probe.update_one({'_id': 1}, {'$inc': {'n': 1}}, upsert=True)",
        this.uri], { stdio: "ignore" });
      const t = setTimeout(() => probe.kill("SIGKILL"), 15000);
      probe.once("exit", (code) => { clearTimeout(t); resolve(code === 0); });
    });
  }
  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    children.delete(this.proc);
    rmSync(this.storage, { recursive: true, force: true });
  }
}

/** Signs Clerk-shaped session tokens (RS256) with its own key pair. */
export class Issuer {
  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.privateKey = privateKey;
    this.publicPem = publicKey.export({ type: "spki", format: "pem" });
  }
  token(sub, { sid, ttl = 60 } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const input = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ sub, sid: sid ?? `sess_${randomUUID().slice(0, 16)}`,
      iat: now, nbf: now - 10, exp: now + ttl, v: 2 })}`;
    return `${input}.${sign("sha256", Buffer.from(input), this.privateKey).toString("base64url")}`;
  }
}

/** A chat-server process; `port` fixed across restarts so that clients reconnect to the same URL. */
export class Server {
  constructor(mongo, issuer, { port, db } = {}) {
    this.mongo = mongo;
    this.issuer = issuer;
    this.port = port;
    this.db = db ?? `js_${randomUUID().replace(/-/g, "").slice(0, 12)}`;
    this.lines = [];
  }
  async start() {
    if (!this.port) this.port = await freePort();
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLERK_") && k !== "MONGODB_URI"));
    Object.assign(env, {
      NODE_ENV: "test", PORT: String(this.port), HOST: "127.0.0.1", MONGODB_URI: `${this.mongo.uri}/${this.db}`,
      CLERK_WEBHOOK_SECRET: WEBHOOK_SECRET, CLERK_JWT_KEY: this.issuer.publicPem, SHUTDOWN_GRACE_SECONDS: "5", LOG_LEVEL: "info",
    });
    this.proc = spawn(SERVER_BIN, ["serve", "--env-file", "/nonexistent"], { env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(this.proc);
    const ready = new Promise((resolve, reject) => {
      let buf = "";
      const onData = (d) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.lines.push(line);
          if (this.lines.length > 400) this.lines.shift();
          if (/Server running on port \d+/.test(line) || /"msg":"Server running"/.test(line)) resolve();
        }
      };
      this.proc.stdout.on("data", onData);
      this.proc.stderr.on("data", onData);
      this.proc.once("exit", (code) => reject(new Error(`chat-server exited (${code}):\n${this.lines.slice(-30).join("\n")}`)));
    });
    const timeout = sleep(30000).then(() => { throw new Error(`chat-server did not start:\n${this.lines.slice(-30).join("\n")}`); });
    await Promise.race([ready, timeout]);
    return this;
  }
  get url() { return `ws://127.0.0.1:${this.port}/ws`; }
  /** SIGTERM (the server drains: close 1012), SIGKILL after 15 s. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode) return;
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 15000);
    await exited;
    clearTimeout(t);
    children.delete(this.proc);
  }
  async restart() {
    await this.stop();
    await this.start();
  }
  /** POSTs a Clerk webhook signed by the official Svix library; resolves with the HTTP status. */
  async webhook(event) {
    const body = JSON.stringify(event);
    const msgId = `msg_${randomUUID().replace(/-/g, "")}`;
    const ts = Math.floor(Date.now() / 1000);
    const signature = execFileSync(PYTHON, ["-c",
      "import sys, datetime; from svix.webhooks import Webhook; " +
      "print(Webhook(sys.argv[1]).sign(sys.argv[2], datetime.datetime.fromtimestamp(int(sys.argv[3]), tz=datetime.timezone.utc), sys.stdin.read()))",
      WEBHOOK_SECRET, msgId, String(ts)], { input: body }).toString().trim();
    const res = await fetch(`http://127.0.0.1:${this.port}/api/webhooks/clerk`, { method: "POST", body,
      headers: { "content-type": "application/json", "svix-id": msgId, "svix-timestamp": String(ts), "svix-signature": signature } });
    await res.arrayBuffer();
    return res.status;
  }
}

export function fixture(name) {
  return JSON.parse(readFileSync(path.join(ROOT, "Tests/Fixtures/clerk", name), "utf8"));
}

/**
 * A TCP relay in front of a server: `hold()` stops passing the server's bytes on to the clients connected
 * now (they are dropped, as on a stalled network), `cut()` drops every connection without a close frame.
 */
export class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
  }
  async start() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, "127.0.0.1");
      const pair = { client, upstream, held: false };
      this.pairs.add(pair);
      client.on("data", (d) => upstream.write(d));
      upstream.on("data", (d) => { if (!pair.held) client.write(d); });
      const end = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
      client.on("error", end); upstream.on("error", end); client.on("close", end); upstream.on("close", end);
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    return this;
  }
  get url() { return `ws://127.0.0.1:${this.port}/ws`; }
  /** From now on the server's bytes on the connections open now go nowhere (new connections pass). */
  hold() { for (const pair of this.pairs) pair.held = true; }
  cut() {
    for (const { client, upstream } of this.pairs) { client.resetAndDestroy?.() ?? client.destroy(); upstream.destroy(); }
    this.pairs.clear();
  }
  async stop() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
