#!/usr/bin/env bash
# The whole suite: Swift unit and integration tests, the JavaScript client's tests (node --test, tsc), then
# the Python tests that drive the server with clients this project did not write. The Swift tests share
# one throwaway embedded MongoDB on a free port; the JavaScript tests start one of their own, the Python
# tests a fresh one per test file (tests/conftest.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

swift build --build-tests

port=$(free_port)
log=$(mktemp -t secantus.XXXXXX.log)
start_secantus "$port" ":memory:" "$log"
trap 'stop_secantus $SECANTUS_PID' EXIT

export CHAT_TEST_MONGODB_URI="mongodb://127.0.0.1:$port"
export CHAT_SERVER_BIN="$ROOT/.build/debug/chat-server"
export SECANTUSD
# libmongoc counters in memory, not in /dev/shm files that killed test processes leave behind (see tests/conftest.py).
export MONGOC_DISABLE_SHM=1

status=0
# Serially: the integration tests start server processes that all create databases and indexes on the
# one embedded MongoDB, and it is steadier under less concurrency on two cores.
# Each runner is bounded as a whole too, so a wedged database fails the run well inside CI's 90 minutes.
timeout 1200 swift test --skip-build --no-parallel 2>&1 | tee .build/swift-test.log || status=1
grep -qE "Test run with [0-9]+ tests? .*passed|Executed [0-9]+ tests?, with 0 failures" .build/swift-test.log || status=1
stop_secantus $SECANTUS_PID; SECANTUS_PID=""
if [[ -d tests/js ]] && ls tests/js/*.test.mjs >/dev/null 2>&1; then
  # The JavaScript client (clients/js) against real chat-server processes on an embedded MongoDB of its
  # own (tests/js/harness.mjs), then its hand-written types checked by tsc on a usage example.
  # Node 20 has a global WebSocket only behind a flag (Node 22 has it by default).
  node_flags=()
  node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null || node_flags+=(--experimental-websocket)
  timeout 900 node "${node_flags[@]}" --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination=.build/js-test.tap tests/js/ || status=1
  # The summary line, and a run that tested nothing (or was killed before its summary) fails too.
  grep -E "^# (tests|pass|fail) " .build/js-test.tap | tr '\n' ' '; echo
  grep -qE "^# pass [1-9]" .build/js-test.tap && grep -qE "^# fail 0$" .build/js-test.tap || status=1
  timeout 300 tsc -p clients/js && echo "tsc: clients/js/example.ts type-checks against chat-client.d.ts" || status=1
fi
if [[ -d tests ]] && ls tests/test_*.py >/dev/null 2>&1; then
  # A test that hangs fails after 180 s instead of holding CI until its deadline. A failed test runs
  # once more, on a fresh embedded MongoDB if its own stopped answering (tests/conftest.py); the
  # summary line counts the reruns. 45 minutes: test_walkthrough.py's first `make run` builds in
  # release mode (about 10 minutes on two busy cores).
  timeout 2700 .venv/bin/python -m pytest -q --timeout 180 --reruns 1 tests || status=1
fi
exit $status
