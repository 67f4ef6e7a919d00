"""Requests answered per status code while Redis is down, failing open and failing closed.

Not a test (tests/test_redis_outage.py checks the behaviour; this counts). For each mode it serves a
throwaway install with gunicorn (2 sync workers, SQLite, a private redis-server on a spare port),
puts a steady load on ``GET /api/v1/me/`` with an API key (4 client threads), and takes Redis away
for ``--outage`` seconds twice: killed (connections refused), then SIGSTOP'd (connections accepted,
never answered; it keeps its data). It prints the answers by status code during each outage, and
after it until the limiter counts again, and the same span with Redis up before, for comparison
(the machine's load sets the absolute numbers).

    python bench/bench_redis_outage.py [--outage 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import Install, Load, RedisServer


def _run(mode: str, outage_seconds: float) -> list[tuple[str, str, Counter, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="symphony-outage-") as tmp, RedisServer(Path(tmp)) as redis:
        fail_open = "true" if mode == "open" else "false"
        with Install(Path(tmp), workers=2, REDIS_URL=redis.url, SYMPHONY_RATELIMIT_FAIL_OPEN=fail_open) as install:
            headers = {"Authorization": install.user_with_key("load", ["operator"])["Authorization"]}
            with Load(f"{install.url}/api/v1/me/", headers) as load:
                time.sleep(1)
                steady = time.monotonic()
                time.sleep(outage_seconds)  # the same span with Redis up, for comparison
                before = Counter(status for _t, status, _r in load.between(steady, time.monotonic()))
                rows.append((mode, "Redis up (before)", before, outage_seconds))
                for outage in ("kill", "sigstop"):
                    started = time.monotonic()
                    redis.kill() if outage == "kill" else redis.stop()
                    time.sleep(outage_seconds)
                    ended = time.monotonic()
                    redis.start() if outage == "kill" else redis.cont()
                    while not install.call("GET", "/api/v1/me/", headers).headers.get("X-RateLimit-Limit"):
                        time.sleep(0.1)
                    recovered = time.monotonic()
                    time.sleep(2)
                    during = Counter(status for _t, status, _r in load.between(started, ended))
                    after = Counter(status for _t, status, _r in load.between(ended, recovered))
                    rows.append((mode, outage, during, ended - started))
                    rows.append((mode, f"{outage}: until counted again", after, recovered - ended))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down (default 10)")
    args = parser.parse_args()
    rows = _run("open", args.outage) + _run("closed", args.outage)
    print(f"GET /api/v1/me/ under 4 client threads, 2 gunicorn workers; Redis down {args.outage:g} s")
    print(f"{'fail':<7} {'phase':<28} {'seconds':>8}  answers by status (0: no answer)")
    for mode, phase, statuses, seconds in rows:
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())) or "none"
        print(f"{mode:<7} {phase:<28} {seconds:>8.1f}  {answers}")


if __name__ == "__main__":
    main()
