"""``/sso/``: start, callback (register ``<origin>/sso/callback/`` at the provider)."""

from django.urls import path

from accounts.sso import views

urlpatterns = [
    path("login/", views.SsoLoginView.as_view(), name="sso-login"),
    path("callback/", views.sso_callback, name="sso-callback"),
]
