from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        from accounts import ratelimit
        from observability.registry import register_health_check

        register_health_check("ratelimit", ratelimit.health_check)
