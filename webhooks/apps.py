from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # Domain events of the apps below reach the outbox through audit.hooks: they never import us.
        from audit.hooks import domain_event
        from webhooks.services import outbox_enqueue_receiver

        domain_event.connect(outbox_enqueue_receiver, dispatch_uid="webhooks.outbox")
