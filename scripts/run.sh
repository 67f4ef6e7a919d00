#!/usr/bin/env bash
# `make run`: the embedded default (SQLite + a shared SQLite cache unless DATABASE_URL/REDIS_URL are set),
# migrated, with an admin user and the demo, served by gunicorn on 127.0.0.1:${PORT:-8000}
# with the production configuration (config/gunicorn.conf.py).
# The audit trail signs checkpoints of its hash chain with var/audit_signing_key.pem (generated once)
# into var/audit-checkpoints (docs/audit.md); SYMPHONY_AUDIT_* override both.
# The scheduler (run_scheduler), the webhook sender (run_webhooks) and SYMPHONY_DEMO_WORKERS demo agent
# workers (default 2, one per demo agent; 0: none) run beside gunicorn and stop with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEMO_WORKERS=${SYMPHONY_DEMO_WORKERS:-2}
case "$DEMO_WORKERS" in
  ''|*[!0-9]*) echo "SYMPHONY_DEMO_WORKERS must be a count (0 for none), got '$DEMO_WORKERS'" >&2; exit 2 ;;
esac
VAR_DIR=${SYMPHONY_VAR_DIR:-var}
mkdir -p "$VAR_DIR"
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
  # Generated once; settings read it from the var directory, so manage.py commands find it too.
  [ -s "$VAR_DIR/secret_key" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$VAR_DIR/secret_key")
  export SECRET_KEY_FILE="$VAR_DIR/secret_key"
fi
# The audit trail's signing key (Ed25519, PEM) and its checkpoint folder, outside the database.
if [ -z "${SYMPHONY_AUDIT_SIGNING_KEY_FILE:-}" ]; then
  if [ ! -s "$VAR_DIR/audit_signing_key.pem" ]; then
    (umask 077 && "$PY" -c 'import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
sys.stdout.buffer.write(Ed25519PrivateKey.generate().private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))' \
      > "$VAR_DIR/audit_signing_key.pem.tmp" && mv "$VAR_DIR/audit_signing_key.pem.tmp" "$VAR_DIR/audit_signing_key.pem")
  fi
  export SYMPHONY_AUDIT_SIGNING_KEY_FILE=$(cd "$VAR_DIR" && pwd)/audit_signing_key.pem
fi
export SYMPHONY_AUDIT_CHECKPOINT_DIR=${SYMPHONY_AUDIT_CHECKPOINT_DIR:-$(cd "$VAR_DIR" && pwd)/audit-checkpoints}
mkdir -p "$SYMPHONY_AUDIT_CHECKPOINT_DIR"
export PORT=${PORT:-8000}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:${PORT}}
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2}
# Metrics summed across workers; gunicorn empties this folder when it starts.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$(cd "$VAR_DIR" && pwd)/prometheus}
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py ensure_admin
# The demo fleet (created once; keys in $VAR_DIR/demo_agents.json, mode 0600) and a few tasks for it to run.
"$PY" manage.py seed_demo --submit "${SYMPHONY_DEMO_TASKS:-3}"
"$PY" manage.py seed_demo_workflow
echo "Symphony: http://127.0.0.1:${PORT}/admin/  (API docs: http://127.0.0.1:${PORT}/api/docs/)"
echo "Audit checkpoints: $SYMPHONY_AUDIT_CHECKPOINT_DIR (verify: SYMPHONY_AUDIT_SIGNING_KEY_FILE=$SYMPHONY_AUDIT_SIGNING_KEY_FILE SYMPHONY_AUDIT_CHECKPOINT_DIR=$SYMPHONY_AUDIT_CHECKPOINT_DIR $PY manage.py audit_verify)"

"$PY" -m gunicorn -c config/gunicorn.conf.py symphony.wsgi &
pids=("$!")
# The webhook sender (docs/webhooks.md): its own process, so no request ever waits on a receiver.
"$PY" manage.py run_webhooks &
pids+=("$!")
# The ASGI stream process: server-sent events (GET /api/v1/tasks/{id}/stream/) and claims that wait for
# work (POST /api/v1/agent/claim/ with wait_seconds), without a sync worker each (docs/agents.md, "Live
# output", "Waiting for work"). In production nginx routes the /stream/ paths and the claim path to it.
STREAM_PORT="${STREAM_PORT:-8001}"
env -u PROMETHEUS_MULTIPROC_DIR "$PY" -m uvicorn symphony.asgi:application --host 127.0.0.1 --port "$STREAM_PORT" \
  --no-access-log --timeout-graceful-shutdown 5 &
pids+=("$!")
echo "Task streams: http://127.0.0.1:${STREAM_PORT}/api/v1/tasks/{id}/stream/"
# However this script ends (Ctrl-C, SIGTERM, gunicorn exiting): stop the workers first, so they can hand
# back unfinished tasks while the server still answers, then the server.
stop_all() {
  if [ ${#pids[@]} -gt 1 ]; then kill -TERM "${pids[@]:1}" 2>/dev/null || true; wait "${pids[@]:1}" 2>/dev/null || true; fi
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 0' INT TERM

# Fires schedules (and approval timeouts) every SYMPHONY_SCHEDULER_TICK_SECONDS.
env -u PROMETHEUS_MULTIPROC_DIR "$PY" manage.py run_scheduler &
pids+=("$!")

demo() { "$PY" -c "import json; d = json.load(open('$VAR_DIR/demo_agents.json')); print($1)"; }

if [ "$DEMO_WORKERS" -gt 0 ]; then
  for _ in $(seq 100); do
    "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:${PORT}/health/live', timeout=1)" \
      2>/dev/null && break
    sleep 0.2
  done
  for ((i = 0; i < DEMO_WORKERS; i++)); do
    # Workers take the demo agents' keys in turn (several workers may share an agent).
    # The key goes through the environment, not the command line (which every local user can read).
    # The workers are HTTP clients: keep them out of the server's multiprocess metrics folder.
    # Claims go to the ASGI process, which holds them until a task arrives (no nginx here to route them).
    SYMPHONY_AGENT_KEY=$(demo "d['agents'][$i % len(d['agents'])]['key']") \
      env -u PROMETHEUS_MULTIPROC_DIR "$PY" manage.py run_agent --url "http://127.0.0.1:${PORT}" \
      --claim-url "http://127.0.0.1:${STREAM_PORT}" --demo --concurrency 2 &
    pids+=("$!")
  done
  cat <<EOF

$DEMO_WORKERS demo agent worker(s) are running tasks: watch them at http://127.0.0.1:${PORT}/admin/agents/task/
Submit one yourself with the demo submitter key from $VAR_DIR/demo_agents.json:

  KEY=\$(python3 -c "import json; print(json.load(open('$VAR_DIR/demo_agents.json'))['submit_key'])")
  curl -s -X POST http://127.0.0.1:${PORT}/api/v1/tasks/ -H "Authorization: Bearer \$KEY" \\
    -H 'Content-Type: application/json' \\
    -d '{"orchestra": $(demo "d['orchestra']"), "kind": "word_count", "input": {"text": "hello agents"}, "required_capabilities": ["word_count"]}'

EOF
fi
wait "${pids[0]}"
