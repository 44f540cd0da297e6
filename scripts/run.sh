#!/usr/bin/env bash
# Starts chat-server; when MONGODB_URI is configured nowhere, first starts the embedded MongoDB
# (SecantusDB) on 127.0.0.1:27017 with its data in .data/mongo, and stops it when the server stops.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

uri="${MONGODB_URI:-}"
if [[ -z "$uri" && -f .env ]]; then
  uri=$(grep -E '^\s*(export\s+)?MONGODB_URI=' .env | tail -1 | sed -E 's/^\s*(export\s+)?MONGODB_URI=//; s/^["'\'']//; s/["'\'']$//' || true)
fi

if [[ -z "$uri" ]]; then
  if (exec 3<>/dev/tcp/127.0.0.1/27017) 2>/dev/null; then
    echo "ℹ️  something already listens on 127.0.0.1:27017: using it as MongoDB"
  else
    mkdir -p .data/mongo
    echo "ℹ️  MONGODB_URI is not set: starting the embedded MongoDB on 127.0.0.1:27017 (data in .data/mongo)"
    start_secantus 27017 "$ROOT/.data/mongo" "$ROOT/.data/mongo.log"
    trap 'stop_secantus $SECANTUS_PID' EXIT
  fi
  export MONGODB_URI="mongodb://127.0.0.1:27017/chat"
fi

# In development without CLERK_JWT_KEY the server trusts a local key pair (see README).
if [[ -f scripts/dev-keys.sh ]]; then source scripts/dev-keys.sh; fi

"$ROOT/.build/release/chat-server" "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
status=0
wait $server || status=$?
# A signal interrupts the first wait: wait again for the server's own clean exit.
if kill -0 $server 2>/dev/null; then wait $server || status=$?; fi
exit $status
