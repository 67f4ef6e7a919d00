"""Orchestras, agents and tasks belong to a project; existing rows move to the ``default`` project.

The columns are added nullable, filled, then made NOT NULL. Agent-bound keys become restricted to
their agent's project. Names become unique per project instead of install-wide.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import accounts.models


def move_to_default(apps, schema_editor):
    Project = apps.get_model("accounts", "Project")
    project, _ = Project.objects.get_or_create(slug="default", defaults={"name": "Default"})
    for model in ("Agent", "Orchestra", "Task"):
        apps.get_model("agents", model).objects.filter(project__isnull=True).update(project=project)
    ApiKey = apps.get_model("accounts", "ApiKey")
    Agent = apps.get_model("agents", "Agent")
    ApiKey.objects.filter(pk__in=Agent.objects.exclude(api_key=None).values("api_key_id")).update(project=project)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_projects"),
        ("agents", "0002_attempt_numbers_and_storable_json"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="project",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="agents", to="accounts.project"
            ),
        ),
        migrations.AddField(
            model_name="orchestra",
            name="project",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="orchestras", to="accounts.project"
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="project",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="tasks", to="accounts.project"
            ),
        ),
        migrations.RunPython(move_to_default, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="agent",
            name="project",
            field=models.ForeignKey(
                default=accounts.models.default_project_id,
                help_text="The project the agent belongs to; it claims only this project's tasks.",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="agents",
                to="accounts.project",
            ),
        ),
        migrations.AlterField(
            model_name="orchestra",
            name="project",
            field=models.ForeignKey(
                default=accounts.models.default_project_id,
                help_text="The project the orchestra belongs to; its members and tasks are of the same project.",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orchestras",
                to="accounts.project",
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="project",
            field=models.ForeignKey(
                default=accounts.models.default_project_id,
                help_text="The project of the task: always its orchestra's (or its target agent's) project.",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="tasks",
                to="accounts.project",
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="name",
            field=models.CharField(help_text="Name of the agent, unique in its project.", max_length=100),
        ),
        migrations.AlterField(
            model_name="orchestra",
            name="name",
            field=models.CharField(help_text="Name of the orchestra, unique in its project.", max_length=100),
        ),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.UniqueConstraint(fields=("project", "name"), name="agent_unique_name_per_project"),
        ),
        migrations.AddConstraint(
            model_name="orchestra",
            constraint=models.UniqueConstraint(fields=("project", "name"), name="orchestra_unique_name_per_project"),
        ),
    ]
