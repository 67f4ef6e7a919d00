"""On PostgreSQL, make the audit table refuse UPDATE, DELETE and TRUNCATE.

The one UPDATE let through is sealing: on a row not yet sealed (``hash`` NULL), and changing only
``prev_hash``, ``hash`` and ``chain_seq`` (``audit.services.audit_seal``). DELETE goes through only when the transaction set ``symphony.audit_purge = 'on'`` (``SET LOCAL``,
done by ``audit_purge`` alone). TRUNCATE goes through only with ``symphony.audit_allow_truncate =
'on'``, which the test suite sets on its connections so Django can flush between transactional
tests; nothing in Symphony sets it otherwise. SQLite has no such triggers: this is a no-op there.
"""

from django.db import migrations

FORWARD = """
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

CREATE TRIGGER audit_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_auditevent_append_only();

CREATE TRIGGER audit_auditevent_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_auditevent_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_auditevent_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_auditevent_no_update_delete ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_auditevent_append_only();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # None: no %-placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD), elidable=False)]
