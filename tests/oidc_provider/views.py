"""The control API of the test provider (JSON POSTs with the X-Control-Token header)."""

import hmac
import json

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import Application

from tests.oidc_provider.validators import MODES, STATE


def _control(view):
    @csrf_exempt
    def wrapped(request):
        token = request.headers.get("X-Control-Token", "")
        if request.method != "POST" or not hmac.compare_digest(token, settings.OIDC_TEST_CONTROL_TOKEN):
            return HttpResponse(status=403)
        return view(json.loads(request.body or b"{}"))

    return wrapped


@_control
def user(body):
    """Create or update a user: username, password, email, first_name, last_name, groups."""
    account, _ = User.objects.get_or_create(username=body["username"])
    for attr in ("email", "first_name", "last_name"):
        if attr in body:
            setattr(account, attr, body[attr])
    if "password" in body:
        account.set_password(body["password"])
    account.save()
    if "groups" in body:
        account.groups.set([Group.objects.get_or_create(name=name)[0] for name in body["groups"]])
    return JsonResponse({"sub": str(account.pk)})


@_control
def client(body):
    """Set the client's redirect_uris and post_logout_redirect_uris (space-separated)."""
    app = Application.objects.get(client_id=settings.OIDC_TEST_CLIENT_ID)
    app.redirect_uris = body.get("redirect_uris", app.redirect_uris)
    app.post_logout_redirect_uris = body.get("post_logout_redirect_uris", app.post_logout_redirect_uris)
    app.save()
    return JsonResponse({"ok": True})


@_control
def mode(body):
    """Make the provider misbehave: one of validators.MODES."""
    if body.get("mode") not in MODES:
        return JsonResponse({"error": f"mode must be one of {MODES}"}, status=400)
    STATE["mode"] = body["mode"]
    return JsonResponse({"mode": STATE["mode"]})
