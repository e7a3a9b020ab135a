from __future__ import annotations

import datetime as dt

from testenv import kwok


def test_cri_log_line_is_what_kubelet_reads() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    assert kwok.cri_log_line("hi there", when) == "2026-01-02T03:04:05.123456Z stdout F hi there\n"


def test_pods_are_bound_to_the_kwok_node() -> None:
    pod = kwok.pod("web", "ns1")
    assert pod["spec"]["nodeName"] == kwok.NODE_NAME
    assert pod["metadata"] == {"name": "web", "namespace": "ns1", "labels": {"app": "web"}}


def test_a_pod_declares_the_ports_it_is_given() -> None:
    assert "ports" not in kwok.pod("web", "ns1")["spec"]["containers"][0]
    container = kwok.pod("web", "ns1", ports=(8080,))["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8080}]


def test_behaviour_objects_are_named_after_their_pod() -> None:
    objects = [
        kwok.logs("web", "ns1", "/tmp/web.log"),
        kwok.attach("web", "ns1", "/tmp/web.log"),
        kwok.exec_local("web", "ns1", "/tmp/work"),
        kwok.port_forward("web", "ns1", 8080, 31000),
    ]
    assert {o["kind"] for o in objects} == set(kwok.CRD_KINDS)
    assert all(o["metadata"] == {"name": "web", "namespace": "ns1"} for o in objects)
    forward = objects[-1]["spec"]["forwards"][0]
    assert forward == {"ports": [8080], "target": {"address": "127.0.0.1", "port": 31000}}
    assert objects[0]["spec"]["logs"][0]["follow"] is True
