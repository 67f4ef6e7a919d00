from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts import authentication, schema, seeding, signals
        from accounts.access import audit_project_scope
        from accounts.backends import counters_cache_lost
        from audit.selectors import register_project_scope
        from ratelimit.limiter import register_key_resolver, register_outage_listener

        post_migrate.connect(seeding.ensure_catalog, sender=self, dispatch_uid="accounts.ensure_catalog")
        signals.connect()
        schema.register()
        register_key_resolver(authentication.rate_limit_caller)
        register_outage_listener(counters_cache_lost)
        register_project_scope(audit_project_scope)
