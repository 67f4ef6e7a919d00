"""Rows either unsealed or sealed from position 1 up; purging needs a database privilege, not a setting.

The constraint holds on SQLite and PostgreSQL. On PostgreSQL the append-only trigger is replaced:

- The one UPDATE let through is still sealing, and now only a complete one: from no position and
  no hash to both, content untouched.
- DELETE and TRUNCATE go through only for members of the role ``symphony_audit_purger`` (superusers
  are members of every role). Any session could ``SET LOCAL`` the settings the previous trigger
  obeyed (``symphony.audit_purge``, ``symphony.audit_allow_truncate``); membership in a role can
  only be granted by someone with authority over that role, which the application's role lacks.
- The function pins ``search_path`` so a session cannot shadow ``pg_has_role`` with its own.

The migration creates ``symphony_audit_purger`` (NOLOGIN) and grants it DELETE and TRUNCATE on the
table when the migrating role may; otherwise it says so in a NOTICE and the operator does it
(docs/DEPLOYMENT.md, "Database roles").
"""

from django.db import migrations, models

FORWARD = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'symphony_audit_purger') THEN
        BEGIN
            CREATE ROLE symphony_audit_purger NOLOGIN;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot create role symphony_audit_purger: create it as docs/DEPLOYMENT.md says';
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by another migration run (roles are cluster-wide)
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'symphony_audit_purger') THEN
        BEGIN
            GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_auditevent TO symphony_audit_purger;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot grant DELETE on audit_auditevent to symphony_audit_purger: see docs/DEPLOYMENT.md';
        END;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION audit_auditevent_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.hash IS NULL AND OLD.chain_seq IS NULL
       AND NEW.hash IS NOT NULL AND NEW.chain_seq IS NOT NULL
       AND (to_jsonb(NEW) - 'prev_hash' - 'hash' - 'chain_seq') = (to_jsonb(OLD) - 'prev_hash' - 'hash' - 'chain_seq')
    THEN
        RETURN NEW;
    END IF;
    IF TG_OP IN ('DELETE', 'TRUNCATE') AND (
        (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
        OR EXISTS (
            SELECT 1 FROM pg_catalog.pg_roles AS purger
            WHERE purger.rolname = 'symphony_audit_purger'
              AND pg_catalog.pg_has_role(current_user, purger.oid, 'MEMBER')
        )
    ) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused (purging needs membership of symphony_audit_purger)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

# What migration 0003 installed.
BACKWARD = """
CREATE OR REPLACE FUNCTION audit_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.hash IS NULL
       AND (to_jsonb(NEW) - 'prev_hash' - 'hash' - 'chain_seq') = (to_jsonb(OLD) - 'prev_hash' - 'hash' - 'chain_seq')
    THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' AND current_setting('symphony.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('symphony.audit_allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused (use manage.py audit_purge)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # None: no %-placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_only_triggers")]

    operations = [
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("chain_seq__isnull", True), ("hash__isnull", True))
                | models.Q(("chain_seq__gt", 0), ("chain_seq__isnull", False), ("hash__isnull", False)),
                name="audit_sealed_consistently",
            ),
        ),
        migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD), elidable=False),
    ]
