"""``kubegate doctor``'s decisions: which row skips, the TLS trust, the grant and namespace."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubegate.cli.config_store import Trust
from kubegate.cli.doctor_report import (
    Report,
    Status,
    Verdict,
    cluster_verdict,
    document,
    grant_verdict,
    summary,
    token_verdict,
    trust_verdict,
)
from kubegate.cli.trust import fingerprint

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def ca_pem(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def grant(
    role: str, namespace: str | None, status: str = "applied", detail: str = ""
) -> dict[str, Any]:
    return {
        "id": "g1",
        "role": role,
        "namespace": namespace,
        "status": status,
        "status_detail": detail,
    }


# -- the report ---------------------------------------------------------------------------


def test_a_failed_check_skips_what_needs_it_naming_it() -> None:
    report = Report()
    report.run("login", [], lambda: Verdict.failed("not logged in"))
    report.run("cluster", ["login"], lambda: Verdict.ok("never runs"))
    report.run("grant", ["cluster"], lambda: Verdict.ok("never runs"))
    assert [(r.status, r.detail) for r in report.rows[1:]] == [
        (Status.SKIP, "needs: login"),
        (Status.SKIP, "needs: cluster"),
    ]
    assert report.failed


def test_a_check_skipped_for_its_own_reason_passes_the_reason_on() -> None:
    report = Report()
    report.add("pod", Verdict.skipped("no running pod in dev; pass --pod"))
    report.run("exec (websocket)", ["pod"], lambda: Verdict.ok("never runs"))
    assert report.rows[-1].detail == "no running pod in dev; pass --pod"
    assert not report.failed


def test_a_warning_does_not_block_or_fail() -> None:
    report = Report()
    report.add("server", Verdict.warn("TLS verification is OFF"))
    report.run("cluster", ["server"], lambda: Verdict.ok("online"))
    assert report.rows[-1].status is Status.PASS
    assert not report.failed


def test_an_unexpected_error_is_a_failed_row_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBEGATE_DEBUG", raising=False)

    def broken() -> Verdict:
        raise KeyError("online")

    report = Report()
    report.run("cluster", [], broken)
    assert report.rows[0].status is Status.FAIL
    assert report.rows[0].detail == "unexpected KeyError: 'online'"


def test_json_has_every_row_and_the_versions_and_the_summary_names_failures() -> None:
    report = Report()
    report.add("login", Verdict.ok("ada"))
    report.add("exec (spdy)", Verdict.failed("forbidden", "needs edit or admin"))
    report.add("write (scratch)", Verdict.skipped("not asked"))
    versions = {"kubegate_server": "0.1.0", "kubectl_client": "v1.37.1", "kubernetes": None}
    doc = document(report.rows, versions)
    assert doc["ok"] is False
    assert doc["versions"] == versions
    assert doc["checks"][1] == {
        "check": "exec (spdy)",
        "status": "fail",
        "detail": "forbidden",
        "advice": "needs edit or admin",
    }
    assert summary(report.rows) == "3 checks: 1 passed, 1 skipped, 1 failed: exec (spdy)."


# -- server, cluster, token -----------------------------------------------------------------


def test_a_pinned_ca_is_shown_by_its_fingerprint() -> None:
    pem = ca_pem("kubegate CA")
    verdict = trust_verdict(Trust(ca_pem=pem), "https://kg.example.com", "0.3.0", pem)
    assert verdict.status is Status.PASS
    assert verdict.detail == f"kubegate 0.3.0; TLS: CA pinned at login, SHA-256 {fingerprint(pem)}"


def test_a_server_advertising_another_ca_than_the_pinned_one_is_a_warning() -> None:
    pinned, advertised = ca_pem("old CA"), ca_pem("new CA")
    verdict = trust_verdict(Trust(ca_pem=pinned), "https://kg.example.com", "0.3.0", advertised)
    assert verdict.status is Status.WARN
    assert fingerprint(advertised) in verdict.detail
    assert verdict.advice == "if the admin changed the CA on purpose, log in again: " + (
        "kubegate login https://kg.example.com"
    )


def test_system_roots_pass_and_verification_off_warns() -> None:
    system = trust_verdict(Trust(), "https://kg.example.com", "0.3.0", None)
    assert (system.status, system.detail) == (
        Status.PASS,
        "kubegate 0.3.0; TLS: the system's trusted roots",
    )
    off = trust_verdict(Trust(insecure=True), "https://kg.example.com", "0.3.0", None)
    assert off.status is Status.WARN
    assert "TLS verification is OFF" in off.detail
    assert "--certificate-authority" in off.advice


def test_an_offline_cluster_says_since_when_and_who_to_ask() -> None:
    cluster = {
        "id": "c1",
        "name": "prod",
        "online": False,
        "last_seen_at": (NOW - dt.timedelta(minutes=3)).isoformat(),
        "server": "https://kg:6443/clusters/c1",
    }
    verdict = cluster_verdict(cluster, NOW)
    assert verdict.status is Status.FAIL
    assert verdict.detail == "prod (c1): the cluster's agent is not connected (last seen 3m ago)"
    assert verdict.advice.startswith("ask an admin to check the agent")
    never = cluster_verdict({**cluster, "last_seen_at": None}, NOW)
    assert "(last seen never)" in never.detail


def test_a_token_reused_from_the_cache_says_when_it_was_minted_and_expires() -> None:
    minted = token_verdict(NOW + dt.timedelta(minutes=15), NOW, NOW)
    assert minted.detail == "minted through the exec plugin; expires in 15m (12:15:00 UTC)"
    cached = token_verdict(NOW + dt.timedelta(minutes=10), NOW - dt.timedelta(minutes=5), NOW)
    assert cached.detail.startswith("reused from the cache (minted 5m ago)")


# -- grants and the namespace ---------------------------------------------------------------


def test_no_grant_says_to_ask_an_admin_with_the_command() -> None:
    result = grant_verdict([], None, "prod", "ada@example.com")
    assert result.verdict.status is Status.FAIL
    assert result.verdict.detail == "you hold no grant on prod"
    assert "kubegate cluster access grant ada@example.com --cluster prod" in result.verdict.advice


def test_grants_not_applied_are_each_named_with_their_status_and_detail() -> None:
    grants = [grant("edit", "dev", "failed", "rolebinding refused"), grant("view", None, "pending")]
    result = grant_verdict(grants, None, "prod", "ada@example.com")
    assert result.verdict.status is Status.FAIL
    assert result.verdict.detail == (
        "no grant is applied yet: edit in namespace dev (failed: rolebinding refused); "
        "view cluster-wide (pending)"
    )
    assert "run kubegate doctor again in a moment" in result.verdict.advice


def test_the_single_granted_namespace_is_checked_without_namespace() -> None:
    result = grant_verdict([grant("edit", "dev")], None, "prod", "ada@example.com")
    assert (result.verdict.status, result.namespace, result.role) == (Status.PASS, "dev", "edit")


def test_a_cluster_wide_grant_checks_default() -> None:
    result = grant_verdict([grant("view", None), grant("edit", "dev")], None, "prod", "a@x")
    assert (result.namespace, result.role) == ("default", "view")


def test_the_strongest_role_covering_the_namespace_is_the_one_held() -> None:
    result = grant_verdict([grant("view", None), grant("admin", "dev")], "dev", "prod", "a@x")
    assert (result.namespace, result.role) == ("dev", "admin")


def test_several_namespaces_check_the_first_and_name_the_others() -> None:
    result = grant_verdict([grant("edit", "web"), grant("view", "api")], None, "prod", "a@x")
    assert result.namespace == "api"
    assert "also granted: web (pass --namespace to check one)" in result.verdict.detail


def test_a_namespace_no_grant_covers_says_which_namespace_to_use() -> None:
    grants = [grant("edit", "dev"), grant("view", "stage")]
    result = grant_verdict(grants, "default", "prod", "ada@example.com")
    assert result.verdict.status is Status.FAIL
    assert result.verdict.detail == "your grants are for namespace dev, stage, not default"
    assert result.verdict.advice.startswith("use --namespace dev or --namespace stage")
    assert result.namespace is None
