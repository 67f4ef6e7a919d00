"""User.roles goes through an explicit RoleBinding, which records where a grant came from.

The existing join table becomes RoleBinding in place (its rows become ``manual`` bindings, nothing
is copied), then gains ``source`` and ``created_at`` and trades the (user, role) uniqueness for
(user, role, source), so a role may be held both manually and through single sign-on.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_apikey_verbose_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The auto-created join table already has exactly these columns.
            state_operations=[
                migrations.CreateModel(
                    name="RoleBinding",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="role_bindings",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "role",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="bindings",
                                to="accounts.role",
                            ),
                        ),
                    ],
                    options={"db_table": "accounts_user_roles", "unique_together": {("user", "role")}},
                ),
                migrations.AlterField(
                    model_name="user",
                    name="roles",
                    field=models.ManyToManyField(
                        blank=True, related_name="users", through="accounts.RoleBinding", to="accounts.role"
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="rolebinding",
            name="source",
            field=models.CharField(
                choices=[("manual", "granted manually"), ("sso", "synced from single sign-on")],
                default="manual",
                help_text="manual: granted by a person; sso: replaced by the single sign-on sync at every login.",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="rolebinding",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AlterUniqueTogether(name="rolebinding", unique_together=set()),
        migrations.AlterModelTable(name="rolebinding", table=None),
        migrations.AlterModelOptions(name="rolebinding", options={"ordering": ["user_id", "role_id", "source"]}),
        migrations.AddConstraint(
            model_name="rolebinding",
            constraint=models.UniqueConstraint(
                fields=("user", "role", "source"), name="rolebinding_unique_user_role_source"
            ),
        ),
        migrations.CreateModel(
            name="SsoIdentity",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("issuer", models.CharField(help_text="The provider's issuer URL (the iss claim).", max_length=255)),
                (
                    "subject",
                    models.CharField(help_text="The user's id at the provider (the sub claim).", max_length=255),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_login_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sso_identities",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "SSO identity",
                "verbose_name_plural": "SSO identities",
                "ordering": ["issuer", "subject"],
                "constraints": [
                    models.UniqueConstraint(fields=("issuer", "subject"), name="ssoidentity_unique_issuer_subject")
                ],
            },
        ),
    ]
