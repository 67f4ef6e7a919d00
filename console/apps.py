from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: the admin index as a live dashboard, task timelines, the approvals inbox.

    It sits above ``workflows`` (it reads agents, workflows, audit and budgets) and below ``symphony``;
    the apps' own ``admin.py`` files never import it: their templates load its template tags.
    """

    name = "console"
    verbose_name = "Operator console"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.index_template = "console/index.html"
