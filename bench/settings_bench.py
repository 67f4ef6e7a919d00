"""Settings for the benchmarks: Symphony's own, plus the test-only endpoints (/api/test/...)."""

from symphony.settings import *  # noqa: F403

ROOT_URLCONF = "symphony.tests.urls"
