from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # A configured signing key that cannot be loaded stops the process at start-up
        # (ImproperlyConfigured naming the file), not at the first checkpoint or purge.
        from audit.checkpoints import signing_key

        signing_key()
