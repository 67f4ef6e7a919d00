#!/usr/bin/env bash
# `make run`: the embedded default (SQLite + in-process cache unless DATABASE_URL/REDIS_URL are set),
# migrated, with an admin user and the demo, served by gunicorn on 127.0.0.1:${PORT:-8000}
# with the production configuration (config/gunicorn.conf.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p var
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
  [ -s var/secret_key ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key)
  export SECRET_KEY_FILE=var/secret_key
fi
export PORT=${PORT:-8000}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:${PORT}}
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2}
# Metrics summed across workers; gunicorn empties this folder when it starts.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py ensure_admin
echo "Symphony: http://127.0.0.1:${PORT}/admin/  (API docs: http://127.0.0.1:${PORT}/api/docs/)"
exec "$PY" -m gunicorn -c config/gunicorn.conf.py symphony.wsgi
