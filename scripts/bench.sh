#!/usr/bin/env bash
# make bench: a SHORT run of every chat-bench scenario (about 9 minutes today on a 2-core machine, most
# of it idle's full 10,000 connections, capped at 300 s) against a release chat-server and a throwaway
# embedded MongoDB, both on free ports; `reconnect` runs a second chat-server on the same database and SIGTERMs the first.
# Each scenario gets a fresh database and server: what one leaves behind (connection records of a
# killed server, large event documents) would otherwise slow the next. Writes bench/results.md and
# bench/results.json.
#
# Scenario sizes can be changed from the environment, e.g.
#   BENCH_IDLE_CONNECTIONS=2000 BENCH_CHURN_DURATION=60 scripts/bench.sh
# BENCH_ONLY="idle reconnect" runs only the scenarios named (run names: idle fanout dm-low dm churn
# webhook reconnect); BENCH_RESULTS_DIR (default bench) is where the two result files go.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

: "${BENCH_IDLE_CONNECTIONS:=10000}" "${BENCH_IDLE_TIMEOUT:=300}"
: "${BENCH_RECONNECT_CLIENTS:=1000}" "${BENCH_RECONNECT_LEAVERS:=200}"
: "${BENCH_ONLY:=}" "${BENCH_RESULTS_DIR:=bench}"
: "${BENCH_FANOUT_MEMBERS:=1000}" "${BENCH_FANOUT_SENDERS:=10}" "${BENCH_FANOUT_RATE:=100}" "${BENCH_FANOUT_DURATION:=5}"
: "${BENCH_DM_PAIRS:=50}" "${BENCH_DM_RATE:=1000}" "${BENCH_DM_DURATION:=3}"
: "${BENCH_DM_LOW_RATE:=100}" "${BENCH_DM_LOW_DURATION:=5}"
: "${BENCH_CHURN_RATE:=200}" "${BENCH_CHURN_DURATION:=10}"
: "${BENCH_WEBHOOK_CONCURRENCY:=1,4,16}" "${BENCH_WEBHOOK_COUNT:=200}"

started=$SECONDS
swift build -c release --product chat-server
swift build -c release --product chat-bench
BENCH="$ROOT/.build/release/chat-bench"
SERVER="$ROOT/.build/release/chat-server"

# Thousands of sockets on each side: raise the descriptor limit for the server and chat-bench
# (chat-bench also raises its own).
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d -t chat-bench.XXXXXX)
SERVER_PID=""
SECOND_PID=""
SECANTUS_PID=""
# running PID: alive and not a zombie (kill -0 succeeds on an exited child not yet reaped).
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}
# stop_pid PID: SIGTERM, SIGKILL after 10 s, reaped. Never fails.
stop_pid() {
  local pid=${1:-}
  [[ -n "$pid" ]] || return 0
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$pid" || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
stop_server() {
  stop_pid "$SERVER_PID"
  stop_pid "$SECOND_PID"
  SERVER_PID=""
  SECOND_PID=""
}
stop_database() {
  [[ -n "$SECANTUS_PID" ]] || return 0
  stop_secantus "$SECANTUS_PID"
  SECANTUS_PID=""
}
cleanup() {
  stop_server
  stop_database
  # BENCH_KEEP_LOGS=1: the servers' and the database's logs next to the results.
  if [[ "${BENCH_KEEP_LOGS:-}" == 1 ]]; then mkdir -p "$BENCH_RESULTS_DIR/logs" && cp "$work"/*.log "$work"/*.err "$BENCH_RESULTS_DIR/logs/" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
keys="$work/keys"
jwt_key=$("$BENCH" keys --dir "$keys")
webhook_secret="whsec_$(head -c 24 /dev/urandom | base64 | tr -d '\n')"

# start_server PORT GRACE: a chat-server on the current database; sets STARTED_PID.
start_server() {
  env -u CLERK_PUBLISHABLE_KEY -u CLERK_JWKS_URL -u CLERK_SECRET_KEY \
    NODE_ENV=test PORT="$1" HOST=127.0.0.1 MONGODB_URI="$mongo_uri" \
    CLERK_JWT_KEY="$jwt_key" CLERK_WEBHOOK_SECRET="$webhook_secret" \
    WS_RATE_LIMIT=100000 WS_RATE_BURST=100000 ALLOWED_ORIGINS=http://127.0.0.1 \
    SHUTDOWN_GRACE_SECONDS="$2" LOG_LEVEL=info \
    "$SERVER" serve --env-file /nonexistent >>"$work/server.log" 2>&1 &
  STARTED_PID=$!
  if ! wait_port "$1" 30; then
    echo "chat-server did not start; its log:" >&2
    tail -20 "$work/server.log" >&2
    return 1
  fi
}

# start_stack [second]: a fresh embedded MongoDB (in memory) and chat-server on free ports; with
# "second", a second instance on the same database (SECOND_PORT, SECOND_PID). Shutdown grace: 2 s
# (the scenarios end by SIGKILL or closing their clients), but the server's default 10 s for the
# two instances of `reconnect`, whose restart is what is measured.
start_stack() {
  stop_server
  stop_database
  local db_port grace=2
  [[ "${1:-}" == second ]] && grace=${BENCH_RECONNECT_GRACE:-10}
  db_port=$(free_port)
  start_secantus "$db_port" ":memory:" "$work/db.log"
  mongo_uri="mongodb://127.0.0.1:$db_port/chat_bench"
  SERVER_PORT=$(free_port)
  start_server "$SERVER_PORT" "$grace"
  SERVER_PID=$STARTED_PID
  if [[ "${1:-}" == second ]]; then
    SECOND_PORT=$(free_port)
    start_server "$SECOND_PORT" "$grace"
    SECOND_PID=$STARTED_PID
  fi
  sleep 0.5   # its first heartbeat and change streams
}

results="$work/results.jsonl"
: >"$results"
failures=()
# run NAME ARGS...: one scenario against a fresh database and server. "@MONGO_URI@" in ARGS is
# replaced by the database's URI; "@SECOND_URL@" and "@SECOND_PID@" start a second instance on the
# same database and stand for its WebSocket URL and pid.
run() {
  local name=$1; shift
  if [[ -n "$BENCH_ONLY" && " $BENCH_ONLY " != *" $name "* ]]; then return 0; fi
  echo
  echo "━━ $name ━━"
  if [[ " $* " == *"@SECOND_URL@"* ]]; then start_stack second; else start_stack; fi
  local args=("${@//@MONGO_URI@/$mongo_uri}")
  args=("${args[@]//@SECOND_URL@/ws://127.0.0.1:${SECOND_PORT:-0}/ws}")
  args=("${args[@]//@SECOND_PID@/${SECOND_PID:-0}}")
  local common=(--url "ws://127.0.0.1:$SERVER_PORT/ws" --keys-dir "$keys" --server-pid "$SERVER_PID"
                --db-pid "$SECANTUS_PID" --json-out "$results")
  local t0=$SECONDS lines status=0
  lines=$(wc -l <"$results")
  "$BENCH" "${args[@]}" "${common[@]}" 2>"$work/bench-$name.err" || status=$?
  if ((status != 0)); then
    echo "⚠️  $name exited with status $status:" >&2
    grep -v '^\[' "$work/bench-$name.err" | tail -5 >&2 || true
    failures+=("$name")
    # No result line: record the failure in the table.
    if (($(wc -l <"$results") == lines)); then
      printf '{"scenario":"%s","failed":true,"summary":{"parameters":"%s","results":"did not complete (status %s): %s","target":"","verdict":"failed","notes":[]}}\n' \
        "$name" "$*" "$status" "$(grep -v '^\[' "$work/bench-$name.err" | tail -1 | tr -d '"\\' | cut -c1-200)" >>"$results"
    fi
  fi
  echo "($name: $((SECONDS - t0)) s)"
  stop_server
  stop_database
}

run idle idle --connections "$BENCH_IDLE_CONNECTIONS" --timeout "$BENCH_IDLE_TIMEOUT" --kill-server-at-end
run fanout fanout --members "$BENCH_FANOUT_MEMBERS" --senders "$BENCH_FANOUT_SENDERS" \
  --rate "$BENCH_FANOUT_RATE" --duration "$BENCH_FANOUT_DURATION" --drain 15 --kill-server-at-end
run dm-low dm --pairs "$BENCH_DM_PAIRS" --rate "$BENCH_DM_LOW_RATE" --duration "$BENCH_DM_LOW_DURATION" --kill-server-at-end
run dm dm --pairs "$BENCH_DM_PAIRS" --rate "$BENCH_DM_RATE" --duration "$BENCH_DM_DURATION" --drain 15 --kill-server-at-end
run churn churn --rate "$BENCH_CHURN_RATE" --duration "$BENCH_CHURN_DURATION" --mongo-uri @MONGO_URI@ --python "$ROOT/.venv/bin/python"
run webhook webhook --concurrency "$BENCH_WEBHOOK_CONCURRENCY" --count "$BENCH_WEBHOOK_COUNT" --webhook-secret "$webhook_secret"
# A restart: the clients on the first instance (SIGTERM) move to the second, as behind a load balancer.
# The final presence check waits at most 60 s for A's record to go (today B's sweep of it takes minutes).
run reconnect reconnect --clients "$BENCH_RECONNECT_CLIENTS" --leavers "$BENCH_RECONNECT_LEAVERS" --instance-wait 60 \
  --target-url @SECOND_URL@ --target-pid @SECOND_PID@ --mongo-uri @MONGO_URI@ --python "$ROOT/.venv/bin/python" --kill-server-at-end

# The machine and the commit, then the two result files.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then commit="$commit-dirty"; fi
mkdir -p "$BENCH_RESULTS_DIR"
python3 - "$results" "$commit" "$load_before" "$((SECONDS - started))" "$BENCH_RESULTS_DIR" <<'EOF'
import datetime, json, os, platform, sys

results_path, commit, load_before, elapsed, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
scenarios = [json.loads(line) for line in open(results_path) if line.strip()]

def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"

def memory():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"

machine = {"nproc": os.cpu_count(), "cpu": cpu_model(), "memory": memory(), "kernel": platform.release(),
           "load_average_before": load_before, "load_average_after": " ".join(open("/proc/loadavg").read().split()[:3])}
document = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "machine": machine, "wall_seconds": elapsed, "scenarios": scenarios}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(document, f, indent=2, sort_keys=True, ensure_ascii=False)
    f.write("\n")

def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")

lines = [
    "# chat-bench results",
    "",
    f"- commit: `{commit}`, {document['date']}",
    f"- machine: {machine['nproc']} × {machine['cpu']}, {machine['memory']} RAM, Linux {machine['kernel']}; "
    f"load average before {machine['load_average_before']}, after {machine['load_average_after']}",
    "- server, embedded MongoDB (SecantusDB, Python) and load generator share the machine; "
    "`make bench` runs SHORT versions of the scenarios (see the verdict column), total wall time "
    f"{elapsed} s",
    "- cpu: % of one core per process over the measured window (host: % of all cores, every process on the machine)",
    "",
    "| scenario | parameters | results | target | verdict |",
    "|---|---|---|---|---|",
]
for s in scenarios:
    m = s.get("summary", {})
    verdict = m.get("verdict", "")
    notes = m.get("notes") or []
    if notes:
        verdict += "<br>" + "<br>".join(notes)
    lines.append(f"| {cell(s['scenario'])} | {cell(m.get('parameters', ''))} | {cell(m.get('results', ''))} | "
                 f"{cell(m.get('target', ''))} | {cell(verdict)} |")
lines.append("")
with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
EOF
echo
echo "wrote $BENCH_RESULTS_DIR/results.md and $BENCH_RESULTS_DIR/results.json in $((SECONDS - started)) s"
if ((${#failures[@]})); then
  echo "scenarios that did not complete: ${failures[*]}" >&2
  exit 1
fi
