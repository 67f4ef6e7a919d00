"""Root URLs. Each app owns its own ``urls.py``; API routes live under ``/api/v1/``."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.sso.views import logout_then
from agents.urls import protocol_urlpatterns as agent_protocol
from symphony.views import ApiRootView

admin.site.site_header = "Symphony operator console"
admin.site.site_title = "Symphony"
admin.site.index_title = "Fleet administration"

_drf_logout = LogoutView.as_view()

api_v1 = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("", include(agent_protocol)),  # first: the fleet's requests resolve without trying the rest
    path("", include("accounts.urls")),
    path("", include("audit.urls")),
    path("", include("workflows.urls")),  # before agents: tasks/{id}/approval/ is served here
    path("", include("agents.urls")),
    path("", include("webhooks.urls")),
]

urlpatterns = [
    # Before the admin's and DRF's own logout: after an SSO login, also end the provider's session.
    path("admin/logout/", logout_then(admin.site.admin_view(admin.site.logout))),
    path("api-auth/logout/", logout_then(_drf_logout)),
    path("admin/console/", include("console.urls")),  # before the admin: its catch-all would 404
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Log in/out links of the browsable API (session auth; the same login signals are audited).
    path("api-auth/", include("rest_framework.urls")),
    path("sso/", include("accounts.sso.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's init script from a URL, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("observability.urls")),
]

# --- deploy: the benchmark's bare-Django baseline, only when SYMPHONY_BENCH_VIEWS is on ---
if settings.SYMPHONY_BENCH_VIEWS:
    from symphony import bench_views

    urlpatterns.append(path("bench/constant", bench_views.constant, name="bench-constant"))

handler400 = "symphony.exceptions.handler400"
handler403 = "symphony.exceptions.handler403"
handler404 = "symphony.exceptions.handler404"
handler500 = "symphony.exceptions.handler500"
