"""One rate grammar: what the settings accept, API keys accept too, through every way of creating one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from accounts.models import ApiKey
from accounts.services import api_key_create
from ratelimit.rates import PRESETS, Rate, parse_rate

ACCEPTED = [("100/15m", "100/15m"), ("strict", "100/15m"), ("Moderate", "500/15m"), ("lenient", "5000/15m"),
            ("10/s", "10/s"), ("5000/h", "5000/h"), ("1/2d", "1/2d")]  # fmt: skip
REFUSED = ["100/week", "0/m", "lots", "100/0m", "/m", "100", "-1/m", "100/15"]


@pytest.mark.parametrize(("value", "text"), ACCEPTED)
def test_it_parses_presets_and_rates(value, text):
    rate = parse_rate(value)

    assert rate.text == text
    assert rate == parse_rate(rate.text)


def test_it_knows_the_period_and_compares_rates():
    assert parse_rate("100/15m") == Rate(limit=100, period=900, text="100/15m")
    assert parse_rate("strict").per_second < parse_rate("moderate").per_second < parse_rate("lenient").per_second
    assert set(PRESETS) == {"strict", "moderate", "lenient"}


@pytest.mark.parametrize("value", REFUSED)
def test_it_refuses_anything_else_saying_what_is_accepted(value):
    with pytest.raises(ValueError, match=r"neither a preset .* nor a rate such as 100/15m"):
        parse_rate(value)


def _settings_import(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "symphony.settings", **env},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_settings_accept_the_same_grammar():
    values = ",".join(f"r{i}={value}" for i, (value, _text) in enumerate(ACCEPTED))
    assert _settings_import(SYMPHONY_RATELIMIT_OVERRIDES=values).returncode == 0

    refused = _settings_import(SYMPHONY_RATELIMIT_DEFAULT="100/week")
    assert refused.returncode != 0
    assert "SYMPHONY_RATELIMIT_DEFAULT" in refused.stderr
    assert "neither a preset" in refused.stderr


@pytest.fixture
def root(user_with_role):
    return user_with_role("root", role="super_admin", is_staff=True)


def _create_through_api(client, owner, value):
    # The caller's own limit is generous: a key may not create a key allowed more than itself.
    _key, raw = api_key_create(owner=owner, name="caller", rate_limit="100000/m")
    return client.post(
        "/api/v1/api-keys/",
        data=json.dumps({"name": "api", "rate_limit": value}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("value", "text"), ACCEPTED)
def test_api_keys_accept_it_through_the_api_the_command_and_the_admin(client, root, value, text):
    super_admin = root
    answer = _create_through_api(client, super_admin, value)
    call_command("create_api_key", super_admin.username, "--name", "cli", "--rate-limit", value, stdout=StringIO())
    client.force_login(super_admin)
    admin = client.post(
        "/admin/accounts/apikey/add/", {"name": "admin", "owner": str(super_admin.pk), "rate_limit": value}
    )

    assert answer.status_code == 201, answer.json()
    assert answer.json()["rate_limit"] == text
    assert admin.status_code == 302, admin.context["adminform"].form.errors
    stored = dict(ApiKey.objects.filter(name__in=["api", "cli", "admin"]).values_list("name", "rate_limit"))
    assert stored == {"api": text, "cli": text, "admin": text}


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["100/week", "0/m"])
def test_api_keys_refuse_what_the_settings_refuse_naming_the_field(client, root, value):
    answer = _create_through_api(client, root, value)

    assert answer.status_code == 400
    assert "neither a preset" in answer.json()["error"]["details"]["rate_limit"][0]
    assert not ApiKey.objects.filter(name="api").exists()


@pytest.mark.django_db
@pytest.mark.urls("symphony.tests.urls")
def test_a_keys_multi_minute_limit_is_counted(api, make_key, clock, settings):
    settings.SYMPHONY_RATELIMIT_DEFAULT = "100/m"
    raw = make_key("viewer", rate_limit="3/15m")
    # Windows have per-key jittered edges: start at the next edge so the whole 15 minutes lie ahead.
    first = api.get("/api/test/catalog/", headers={"X-API-Key": raw})
    clock.shift(int(first["X-RateLimit-Reset"]))
    answers = [api.get("/api/test/catalog/", headers={"X-API-Key": raw}) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0]["X-RateLimit-Limit"] == "3"
    assert 840 < int(answers[-1]["Retry-After"]) <= 900
    clock.shift(120)  # two minutes on, a per-minute limit would have reset; this one has not
    assert api.get("/api/test/catalog/", headers={"X-API-Key": raw}).status_code == 429
