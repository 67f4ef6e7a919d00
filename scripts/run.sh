#!/usr/bin/env bash
# `make run`: the embedded default (SQLite + in-process cache unless DATABASE_URL/REDIS_URL are set),
# migrated, with an admin user and the demo, served by gunicorn on 127.0.0.1:${PORT:-8000}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p var
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
  [ -s var/secret_key ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key)
  export SECRET_KEY_FILE=var/secret_key
fi
export PORT=${PORT:-8000}
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py ensure_admin
echo "Symphony: http://127.0.0.1:${PORT}/admin/  (API docs: http://127.0.0.1:${PORT}/api/docs/)"
exec "$PY" -m gunicorn symphony.wsgi --bind "127.0.0.1:${PORT}" --workers "${WEB_CONCURRENCY:-2}" --worker-tmp-dir /dev/shm
