"""Prometheus series of the webhook sender (labels from fixed sets only)."""

from prometheus_client import Counter, Histogram

DELIVERY_ATTEMPTS = Counter(
    "symphony_webhook_delivery_attempts_total",
    "Webhook delivery attempts by outcome (success, http_error, network_error, refused).",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "symphony_webhook_delivery_seconds",
    "Time from sending a webhook request to its answer (or failure).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERIES_ABANDONED = Counter(
    "symphony_webhook_deliveries_abandoned_total", "Deliveries given up after the retry window."
)
WEBHOOKS_DISABLED = Counter(
    "symphony_webhooks_disabled_total", "Webhooks disabled automatically after a run of failed attempts."
)
