from django.apps import AppConfig


class RateLimitConfig(AppConfig):
    name = "ratelimit"
    label = "symphony_ratelimit"  # django-ratelimit's own app label is "ratelimit"
    verbose_name = "Rate limits"

    def ready(self) -> None:
        from observability.registry import register_health_check
        from ratelimit import checks, limiter

        checks.register()
        register_health_check("ratelimit", limiter.health_check)
