"""deploy/ parses and uses only metric names the collector exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from monitoring.metrics import COUNTERS, GAUGES, HISTOGRAM, PREFIX

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = {PREFIX + name for name in [*COUNTERS, *GAUGES]} | {
    PREFIX + HISTOGRAM[0] + suffix for suffix in ("_bucket", "_sum", "_count")
}
NAME = re.compile(r"\binstance_manager_[a-z_]+")


def test_the_alert_rules_parse_and_use_exported_metrics():
    rules = [
        rule
        for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    assert {
        "InstanceManagerInstanceUnhealthy",
        "InstanceManagerHighErrorRate",
        "InstanceManagerHighP95Latency",
        "InstanceManagerCircuitBreakerOpen",
        "InstanceManagerNoHealthyInstanceInGroup",
    } <= {r["alert"] for r in rules}
    used = {name for rule in rules for name in NAME.findall(rule["expr"])}
    assert used and used <= EXPORTED, used - EXPORTED


def test_the_grafana_dashboard_parses_and_uses_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "instance-manager.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used and used <= EXPORTED, used - EXPORTED
    # Ratios are drawn on the same 0..1 scale the metrics use.
    for panel in dashboard["panels"]:
        if panel["fieldConfig"]["defaults"]["unit"] == "percentunit" and "max" in panel["fieldConfig"]["defaults"]:
            assert panel["fieldConfig"]["defaults"]["max"] == 1
