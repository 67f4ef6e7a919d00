"""The system check that keeps rate-limit counters in a cache every process shares."""

from django.core.management import call_command
from django.core.management.base import SystemCheckError

from ratelimit.checks import check_counter_cache


def test_it_accepts_the_default_shared_cache():
    assert check_counter_cache() == []


def test_it_warns_about_a_per_process_cache(settings):
    settings.CACHES = {**settings.CACHES, "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.RATELIMIT_USE_CACHE = "local"

    (warning,) = check_counter_cache()

    assert warning.id == "ratelimit.W001"
    assert "LocMemCache" in warning.msg


def test_it_refuses_a_cache_alias_that_does_not_exist(settings):
    settings.RATELIMIT_USE_CACHE = "nowhere"

    try:
        call_command("check", fail_level="ERROR")
    except SystemCheckError as exc:
        assert "ratelimit.E001" in str(exc)
    else:
        raise AssertionError("manage.py check passed with SYMPHONY_RATELIMIT_CACHE=nowhere")
