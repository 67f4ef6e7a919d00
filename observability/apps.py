import os

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from observability import logs, tracing

        logs.configure_structlog()
        user_login_failed.connect(_count_login_failure, dispatch_uid="observability.login_failed")
        # Under gunicorn the config's post_fork hook sets tracing up in each worker instead: a span
        # exporter thread started in the master would not survive the fork.
        if not os.environ.get("SYMPHONY_GUNICORN"):
            tracing.configure_tracing()


def _count_login_failure(sender, credentials=None, request=None, **kwargs) -> None:
    from observability import metrics

    metrics.AUTH_FAILURES.labels(method="password").inc()
