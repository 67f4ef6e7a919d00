"""Dockerfile.production, read as text. `make image-test` (scripts/image_smoke.py) builds and runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import dockerfile

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.production"


@pytest.fixture(scope="module")
def parsed():
    return dockerfile.parse(DOCKERFILE)


@pytest.fixture(scope="module")
def final(parsed):
    return parsed[1][-1]


def test_it_is_multi_stage_on_python_311_slim(parsed):
    _, stages = parsed
    assert len(stages) >= 2
    assert all(stage.base.startswith("python:3.11-slim") for stage in stages)
    assert stages[0].name == "builder"
    assert any("pip wheel" in i.args for i in stages[0].all("RUN"))


def test_it_copies_only_sources_that_exist_and_are_not_ignored(parsed):
    patterns = dockerfile.ignore_patterns(ROOT / ".dockerignore")
    _, stages = parsed
    names = {stage.name for stage in stages}
    checked = 0
    for stage in stages:
        for instruction in stage.all("COPY"):
            flags, sources = dockerfile.copy_sources(instruction)
            if "from" in flags:
                assert flags["from"] in names, f"COPY --from={flags['from']} names no stage"
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} does not exist"
                if source != ".":
                    assert not dockerfile.is_ignored(source, patterns), f"{source} is excluded by .dockerignore"
                checked += 1
    assert checked >= 2


def test_it_keeps_what_the_image_needs_in_the_build_context():
    patterns = dockerfile.ignore_patterns(ROOT / ".dockerignore")
    for needed in ["manage.py", "requirements.txt", "symphony/settings.py", "accounts/models.py", "templates"]:
        if (ROOT / needed).exists():
            assert not dockerfile.is_ignored(needed, patterns), needed
    for secret in [".env", "var/secret_key", ".git/config", ".venv/bin/python", "staticfiles/x.css"]:
        assert dockerfile.is_ignored(secret, patterns), f"{secret} would be sent to the builder"


def test_it_runs_as_a_non_root_user_under_tini(final):
    users = final.all("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    entrypoint = dockerfile.json_form(final.all("ENTRYPOINT")[-1].args)
    assert entrypoint[0].endswith("/tini")
    assert any("tini" in i.args for i in final.all("RUN"))


def test_it_serves_with_gunicorn_and_the_config_file(final):
    cmd = dockerfile.json_form(final.all("CMD")[-1].args)
    assert cmd[0] == "gunicorn"
    assert "symphony.wsgi" in cmd
    config = cmd[cmd.index("--config") + 1]
    assert config == "config/gunicorn.conf.py"


def test_it_health_checks_live_without_curl(final):
    healthcheck = final.all("HEALTHCHECK")
    assert len(healthcheck) == 1
    assert "/health/live" in healthcheck[0].args
    assert "urllib.request" in healthcheck[0].args
    assert "curl" not in healthcheck[0].args and "wget" not in healthcheck[0].args


def test_it_has_oci_labels(final):
    labels = " ".join(i.args for i in final.all("LABEL"))
    for key in ["title", "version", "revision", "created", "source", "licenses"]:
        assert f"org.opencontainers.image.{key}=" in labels


def test_it_leaves_no_build_tools_or_caches_in_the_final_stage(final):
    text = " ".join(i.args for i in final.instructions)
    for tool in ["build-essential", "gcc", "libpq-dev", "python3-dev", "curl"]:
        assert not re.search(rf"\b{re.escape(tool)}\b", text), f"{tool} in the final stage"
    runs = [i.args for i in final.all("RUN")]
    assert all("rm -rf /var/lib/apt/lists/*" in run for run in runs if "apt-get install" in run)
    env = " ".join(i.args for i in final.all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env
    assert all("--no-cache-dir" in run or "PIP_NO_CACHE_DIR" in env for run in runs if "pip install" in run)


def test_it_collects_static_at_build_time_without_leaking_the_build_key(parsed, final):
    _, stages = parsed
    collect = [s for s in stages if any("collectstatic" in i.args for i in s.all("RUN"))]
    assert collect, "no stage runs collectstatic"
    assert collect[0] is not final, "collectstatic must run in a stage of its own, so its key stays there"
    assert any("/staticfiles" in i.args for i in final.all("COPY") if "--from=" + collect[0].name in i.args)
    for stage in stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            assert "SECRET_KEY" not in instruction.args, "a SECRET_KEY in ENV/ARG is kept in the image metadata"


def test_it_runs_production_settings(final):
    env = " ".join(i.args for i in final.all("ENV"))
    assert "DEBUG=false" in env
    assert "PROMETHEUS_MULTIPROC_DIR=" in env


def test_it_declares_in_each_stage_every_build_argument_the_stage_uses(parsed):
    # A global ARG is in scope for FROM only: a LABEL using it without `ARG NAME` in its stage is empty
    # (the built image's base.name label was, before the runtime stage declared PYTHON_IMAGE).
    global_args, stages = parsed
    for stage in stages:
        declared = {i.args.partition("=")[0] for i in stage.all("ARG")}
        declared |= {m for i in stage.all("ENV") for m in re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", i.args)}
        for instruction in stage.instructions:
            if instruction.keyword in ("LABEL", "COPY", "WORKDIR", "USER"):
                for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", instruction.args):
                    assert name in declared, f"stage {stage.name}: {instruction.args} needs ARG {name}"
    assert "PYTHON_IMAGE" in global_args


def test_it_labels_after_the_slow_steps_so_a_new_commit_reuses_the_cache(final):
    keywords = [i.keyword for i in final.instructions]
    revision = next(n for n, i in enumerate(final.instructions) if i.keyword == "ARG" and "VCS_REF" in i.args)
    assert revision > max(n for n, keyword in enumerate(keywords) if keyword in ("RUN", "COPY"))


def test_it_makes_the_writable_mount_points_writable_by_the_app_user(final):
    # podman gives a tmpfs the mode of the folder it covers, root-owned: the folder must be world-writable.
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(i.args for i in final.all("ENV"))))
    [install] = [i.args for i in final.all("RUN") if "install -d" in i.args]
    assert "-m 1777" in install
    for folder in (env["SYMPHONY_VAR_DIR"], env["PROMETHEUS_MULTIPROC_DIR"]):
        assert folder in install.split(), folder


def test_it_keeps_the_image_tooling_and_its_storage_out_of_the_build_context():
    patterns = dockerfile.ignore_patterns(ROOT / ".dockerignore")
    for path in [".cache/image/storage/overlay/x", "scripts/image.sh", "scripts/image_smoke.py"]:
        assert dockerfile.is_ignored(path, patterns), path
    assert not dockerfile.is_ignored("scripts/run.sh", patterns)


def test_it_copies_from_a_stage_before_running_with_a_mount_of_it(parsed):
    # buildah keys a RUN's cache on its text, not on a --mount from another stage: without a COPY of that
    # stage's output first, podman reinstalled the old wheels after requirements.txt changed.
    _, stages = parsed
    for stage in stages:
        copied: set[str] = set()
        for instruction in stage.instructions:
            if instruction.keyword == "COPY":
                flags, _ = dockerfile.copy_sources(instruction)
                copied |= {flags["from"]} if "from" in flags else set()
            for source in re.findall(r"--mount=\S*from=([\w-]+)", instruction.args):
                assert source in copied, f"stage {stage.name}: RUN mounts {source} before any COPY --from={source}"
