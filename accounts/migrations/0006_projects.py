"""Projects; role bindings and API keys may be limited to one. Creates the ``default`` project."""

import django.db.models.deletion
from django.db import migrations, models


def create_default_project(apps, schema_editor):
    apps.get_model("accounts", "Project").objects.get_or_create(slug="default", defaults={"name": "Default"})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_rolebinding_ssoidentity"),
    ]

    operations = [
        migrations.CreateModel(
            name="Project",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "slug",
                    models.SlugField(
                        help_text="Lower-case identifier used in the API (?project=alpha); never changes.",
                        max_length=64,
                        unique=True,
                    ),
                ),
                ("description", models.TextField(blank=True, max_length=2000)),
                (
                    "is_active",
                    models.BooleanField(
                        default=True, help_text="Inactive projects keep their objects but dispatch nothing new."
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["slug"],
            },
        ),
        migrations.AlterModelOptions(
            name="rolebinding",
            options={"ordering": ["user_id", "role_id", "project_id", "source"]},
        ),
        migrations.RemoveConstraint(
            model_name="rolebinding",
            name="rolebinding_unique_user_role_source",
        ),
        migrations.AddField(
            model_name="apikey",
            name="project",
            field=models.ForeignKey(
                blank=True,
                help_text="Restricts the key to this project; empty: the owner's projects. Agent keys always have one.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="api_keys",
                to="accounts.project",
            ),
        ),
        migrations.AddField(
            model_name="rolebinding",
            name="project",
            field=models.ForeignKey(
                blank=True,
                help_text="The project the role holds in; empty: every project (a global binding).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="role_bindings",
                to="accounts.project",
            ),
        ),
        migrations.AddConstraint(
            model_name="rolebinding",
            constraint=models.UniqueConstraint(
                condition=models.Q(("project__isnull", True)),
                fields=("user", "role", "source"),
                name="rolebinding_unique_global",
            ),
        ),
        migrations.AddConstraint(
            model_name="rolebinding",
            constraint=models.UniqueConstraint(
                condition=models.Q(("project__isnull", False)),
                fields=("user", "role", "project", "source"),
                name="rolebinding_unique_in_project",
            ),
        ),
        migrations.RunPython(create_default_project, migrations.RunPython.noop),
    ]
