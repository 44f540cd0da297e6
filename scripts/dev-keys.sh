# Sourced by run.sh: outside production, when no Clerk key is configured, trust a local key pair
# (.dev-keys/, git-ignored) so that `chat-server mint-token --user alice` tokens connect.
env_has() { [[ -n "${!1:-}" ]] || { [[ -f .env ]] && grep -qE "^\s*(export\s+)?$1=.+" .env; }; }
node_env="${NODE_ENV:-}"
if [[ -z "$node_env" && -f .env ]]; then node_env=$(grep -E '^\s*(export\s+)?NODE_ENV=' .env | tail -1 | sed -E 's/.*=//; s/["'\'']//g'); fi
if [[ "${node_env:-development}" != "production" ]] && ! env_has CLERK_JWT_KEY && ! env_has CLERK_PUBLISHABLE_KEY && ! env_has CLERK_JWKS_URL; then
  export CLERK_JWT_KEY="$("$ROOT/.build/release/chat-server" dev-keys --dir "$ROOT/.dev-keys")"
  echo "🔑 development: trusting the local key in .dev-keys (mint tokens: .build/release/chat-server mint-token --user alice)"
fi
