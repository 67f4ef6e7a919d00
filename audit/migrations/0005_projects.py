"""Audit events carry the slug of their project (empty outside any project; hashed only when set)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_sealed_consistently_and_purge_privilege"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="project",
            field=models.CharField(
                blank=True,
                db_default="",
                db_index=True,
                default="",
                help_text="Slug of the project the event belongs to; empty for events outside any project.",
                max_length=64,
            ),
        ),
    ]
