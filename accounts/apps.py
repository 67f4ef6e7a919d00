from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        from accounts import ratelimit, schema, signals
        from observability.registry import register_health_check

        signals.connect()
        schema.register()
        register_health_check("ratelimit", ratelimit.health_check)
