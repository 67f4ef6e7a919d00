"""manage.py create_api_key: the key alone on stdout, errors on stderr with a non-zero exit."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import keys
from accounts.models import ApiKey
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def test_it_prints_only_the_key(user_factory):
    user_factory(username="bob", roles=["developer"])
    out = run("bob", "--name", "ci", "--scope", "agent:read", "--scope", "agent:execute", "--expires-in", "30",
              "--rate-limit", "5000/h")  # fmt: skip
    raw = out.strip()
    assert out == raw + "\n"
    key = ApiKey.objects.get(prefix=keys.parse_prefix(raw))
    assert key.key_hash == keys.hash_key(raw)
    assert sorted(key.scopes.values_list("code", flat=True)) == ["agent:execute", "agent:read"]
    assert key.rate_limit == "5000/h"
    assert key.expires_at is not None
    assert AuditEvent.objects.get().event_type == "apikey.created"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost", "--name", "x"], "No user named 'ghost'"),
        (["bob", "--name", "x", "--scope", "agent:fly"], "scopes: Unknown permission code(s): agent:fly"),
        (["bob", "--name", "x", "--scope", "user:delete"], "do not hold: user:delete"),
        (["bob", "--name", "x", "--rate-limit", "100/week"], "--rate-limit"),
    ],
)
def test_it_fails_clearly_without_writing(user_factory, args, message):
    user_factory(username="bob", roles=["viewer"])
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert message in str(exc.value)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("rate", ["100/m", "5000/h", "10/s", "1000/d"])
def test_it_accepts_the_documented_rate_formats(user_factory, rate):
    user_factory(username="bob")
    run("bob", "--name", rate, "--rate-limit", rate)
    assert ApiKey.objects.get().rate_limit == rate


def test_it_exits_non_zero_with_the_error_on_stderr(settings):
    # A real process: the exit status and the streams are what a shell script sees.
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "bob", "--name", "x", "--expires-in", "zero"],
        capture_output=True,
        text=True,
        check=False,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "--expires-in must be a whole number of days" in result.stderr
