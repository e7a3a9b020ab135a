"""The Grafana dashboard in docs/ uses only metrics the server or the agent registers, and
docs/metrics.md lists every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from kubegate.agent.metrics import AgentMetrics
from kubegate.server.metrics import ServerMetrics

DOCS = Path(__file__).parents[2] / "docs"
METRIC = re.compile(r"\bkubegate_[a-z0-9_]+\b")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def registered_samples() -> set[str]:
    """Every sample name the server's and the agent's registries expose."""
    names: set[str] = set()
    for registry in (ServerMetrics(CollectorRegistry()).registry, AgentMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            # A labelled metric has no sample until its first child: name its series anyway.
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in HISTOGRAM_SERIES)
            if family.type == "counter":
                names.add(family.name + "_total")
    return names


def registered_families() -> set[str]:
    families: set[str] = set()
    for registry in (ServerMetrics(CollectorRegistry()).registry, AgentMetrics().registry):
        families.update(family.name for family in registry.collect())
    return families


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DOCS / "grafana" / "kubegate.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [
        variable["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return expressions


def test_every_dashboard_expression_names_a_registered_metric() -> None:
    known = registered_samples()
    expressions = dashboard_expressions()
    assert expressions
    for expression in expressions:
        used = METRIC.findall(expression)
        assert used, f"no kubegate metric in {expression!r}"
        for name in used:
            assert name in known, f"{name} (in {expression!r}) is registered by neither side"


def test_the_dashboard_shows_every_metric_family() -> None:
    used = {name for expression in dashboard_expressions() for name in METRIC.findall(expression)}
    for family in registered_families():
        assert any(name == family or name.startswith(family + "_") for name in used), family


def test_every_metric_is_documented_in_metrics_md() -> None:
    doc = (DOCS / "metrics.md").read_text()
    for name in registered_samples():
        if name.endswith(("_bucket", "_sum", "_count", "_created")):
            continue
        family = name
        assert f"`{family}`" in doc or f"`{family}_total`" in doc, family


def test_metric_names_follow_prometheus_conventions() -> None:
    for registry in (ServerMetrics(CollectorRegistry()).registry, AgentMetrics().registry):
        for family in registry.collect():
            assert family.name.startswith("kubegate_"), family.name
            if family.type == "counter":
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
