"""The database refuses UPDATE and DELETE on the ledger tables (PostgreSQL only).

The ORM already refuses (wallets.models.AppendOnlyModel); this closes raw SQL and other
clients too. TRUNCATE is a different trigger event and stays possible for the test
suite's flush; production roles should not be granted TRUNCATE.
"""

from django.db import migrations

TABLES = ["wallets_journalentry", "wallets_ledgerentry"]

CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION wallets_ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE_FUNCTION, params=None)  # the SQL has literal % signs
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION wallets_ledger_refuse_change();"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
    schema_editor.execute("DROP FUNCTION IF EXISTS wallets_ledger_refuse_change();")


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, elidable=False)]
