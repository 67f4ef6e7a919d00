"""Run the test provider: migrate its SQLite database, register the client, serve on loopback."""

import os

import django


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    Application.objects.update_or_create(
        client_id=settings.OIDC_TEST_CLIENT_ID,
        defaults={
            "name": "symphony",
            "client_secret": settings.OIDC_TEST_CLIENT_SECRET,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "algorithm": Application.RS256_ALGORITHM,
            "skip_authorization": True,
            "redirect_uris": "http://testserver/sso/callback/",
        },
    )
    run("127.0.0.1", settings.PORT, get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
