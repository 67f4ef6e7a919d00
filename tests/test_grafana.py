"""config/grafana/: provisioning files and the Symphony dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "config" / "grafana"


def test_it_provisions_the_prometheus_datasource_the_dashboard_uses():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {ds["uid"]: ds for ds in datasources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    dashboard = json.loads((GRAFANA / "dashboards" / "symphony.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_it_has_a_panel_for_each_signal_operators_watch():
    dashboard = json.loads((GRAFANA / "dashboards" / "symphony.json").read_text())
    assert dashboard["uid"] == "symphony-overview"
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for signal in ["request rate", "p95", "error rate", "tasks by status", "queue depth", "agents by status",
                   "audit events"]:  # fmt: skip
        assert signal in titles, signal
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_it_loads_dashboards_from_the_folder_compose_mounts():
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "symphony.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    path = providers["providers"][0]["options"]["path"]
    assert mounted[path] == "./config/grafana/dashboards"
