"""Benchmark baseline: a bare Django view returning a constant, under the full middleware stack.

Wired in ``symphony/urls.py`` only when ``SYMPHONY_BENCH_VIEWS`` is true (``make bench`` sets it), so
production never serves it. ``bench/run.py`` compares every scenario with this view's throughput.
"""

from django.http import HttpRequest, HttpResponse


def constant(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")
