"""Health endpoints."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The process is up. Touches nothing external."""
    return JsonResponse({"status": "ok"})
