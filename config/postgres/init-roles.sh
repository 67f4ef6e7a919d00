#!/bin/sh
# Run once by the postgres image on a new data volume (/docker-entrypoint-initdb.d), as the owner
# role POSTGRES_USER. Symphony's web tier then connects as symphony_app, which may read and write
# every table but owns none, is no superuser and is not a member of symphony_audit_purger: it can
# append to the audit trail and nothing else there (docs/DEPLOYMENT.md, "Database roles").
# Migrations (which create symphony_audit_purger) and audit_purge run as the owner.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner="$POSTGRES_USER" -v database="$POSTGRES_DB" -v app_password="$SYMPHONY_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE symphony_app LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT CONNECT ON DATABASE :"database" TO symphony_app;
GRANT USAGE ON SCHEMA public TO symphony_app;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO symphony_app;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO symphony_app;
SQL
