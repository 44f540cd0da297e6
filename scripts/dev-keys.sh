# Sourced by run.sh. Outside production, what Clerk would provide is made locally (.dev-keys/,
# git-ignored) when it is not configured: a key pair the server trusts, so that
# `chat-server mint-token --user alice` tokens connect, and a webhook secret, so that
# `chat-server send-webhook` (which finds it there) is accepted. Production never gets either.
env_has() { [[ -n "${!1:-}" ]] || { [[ -f .env ]] && grep -qE "^\s*(export\s+)?$1=.+" .env; }; }
env_source() { if [[ -n "${!1:-}" ]]; then echo "the environment"; else echo ".env"; fi; }
node_env="${NODE_ENV:-}"
if [[ -z "$node_env" && -f .env ]]; then node_env=$(grep -E '^\s*(export\s+)?NODE_ENV=' .env | tail -1 | sed -E 's/.*=//; s/["'\'']//g'); fi
if [[ "${node_env:-development}" != "production" ]]; then
  if ! env_has CLERK_JWT_KEY && ! env_has CLERK_PUBLISHABLE_KEY && ! env_has CLERK_JWKS_URL; then
    export CLERK_JWT_KEY="$("$ROOT/.build/release/chat-server" dev-keys --dir "$ROOT/.dev-keys")"
    echo "🔑 development: trusting the local key in .dev-keys (mint tokens: .build/release/chat-server mint-token --user alice)"
  fi
  if env_has CLERK_WEBHOOK_SECRET; then
    echo "🪝 webhooks: verified with CLERK_WEBHOOK_SECRET from $(env_source CLERK_WEBHOOK_SECRET)"
  else
    export CLERK_WEBHOOK_SECRET="$("$ROOT/.build/release/chat-server" dev-keys --dir "$ROOT/.dev-keys" --webhook-secret)"
    echo "🪝 development: webhooks verified with the local secret in .dev-keys/webhook-secret (chat-server send-webhook signs with it)."
    echo "   For Clerk's deliveries put its signing secret in .env: CLERK_WEBHOOK_SECRET=whsec_... (Dashboard → Webhooks → your endpoint)"
  fi
fi
