# Shared helpers for the run/test/bench scripts.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECANTUSD="$ROOT/.venv/bin/secantusd-py"

# free_port: a TCP port nobody listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  while (( SECONDS < deadline )); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# start_secantus PORT STORAGE LOG: starts the embedded MongoDB in the background, sets SECANTUS_PID.
start_secantus() {
  "$SECANTUSD" --host 127.0.0.1 --port "$1" --storage-path "$2" --log-level WARNING >"$3" 2>&1 &
  SECANTUS_PID=$!
  if ! wait_port "$1" 60; then
    echo "the embedded MongoDB did not start; its log ($3):" >&2
    tail -20 "$3" >&2
    return 1
  fi
}

# stop_secantus PID: SIGTERM, then SIGKILL after 5 s (a wedged SecantusDB does not act on SIGTERM).
# Never fails: it runs from EXIT traps of scripts under set -e.
stop_secantus() {
  local pid=${1:-}
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
