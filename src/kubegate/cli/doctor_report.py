"""``kubegate doctor``'s rows and the decisions behind them, as plain functions of plain values.

A check answers a :class:`Verdict` (pass, warn, fail or skip, what was found, what to do);
the :class:`Report` names it, keeps the rows in order and skips a check whose prerequisite
did not pass (``needs: <check>``). What a row says about the login's TLS trust, an offline
cluster, the caller's grants (and so which namespace the kubectl checks use) and a kube
token's expiry is decided here, without I/O, so the unit tests use plain values.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubegate.cli.config_store import Trust
from kubegate.cli.output import ago
from kubegate.cli.trust import fingerprint
from kubegate.domain.access import Role

ROLE_ORDER = tuple(role.value for role in Role)  # least to most


class Status(enum.StrEnum):
    """A row's outcome. ``warn`` passes (the exit status stays 0) but says something is off."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one check found: its status, what it saw, and what to do about it."""

    status: Status
    detail: str
    advice: str = ""

    @classmethod
    def ok(cls, detail: str, advice: str = "") -> Verdict:
        return cls(Status.PASS, detail, advice)

    @classmethod
    def warn(cls, detail: str, advice: str = "") -> Verdict:
        return cls(Status.WARN, detail, advice)

    @classmethod
    def failed(cls, detail: str, advice: str = "") -> Verdict:
        return cls(Status.FAIL, detail, advice)

    @classmethod
    def skipped(cls, detail: str, advice: str = "") -> Verdict:
        return cls(Status.SKIP, detail, advice)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report (and one object of ``-o json``'s ``checks``)."""

    check: str
    status: Status
    detail: str
    advice: str

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status.value,
            "detail": self.detail,
            "advice": self.advice,
        }


class Report:
    """The rows so far; :meth:`run` runs a check unless one it needs did not pass."""

    def __init__(self, on_start: Callable[[str], None] = lambda name: None) -> None:
        self.rows: list[Row] = []
        self._on_start = on_start

    def add(self, check: str, verdict: Verdict) -> Verdict:
        self.rows.append(Row(check, verdict.status, verdict.detail, verdict.advice))
        return verdict

    def row(self, check: str) -> Row | None:
        return next((r for r in self.rows if r.check == check), None)

    def blocker(self, needs: Sequence[str]) -> str | None:
        """Why a check that needs ``needs`` cannot run: ``needs: <check>``, or the reason a
        needed check was skipped for (``no running pod in NS; pass --pod``)."""
        for name in needs:
            need = self.row(name)
            if need is None or need.status is Status.FAIL:
                return f"needs: {name}"
            if need.status is Status.SKIP:
                own = not need.detail.startswith("needs: ")
                return need.detail if own else f"needs: {name}"
        return None

    def run(self, check: str, needs: Sequence[str], body: Callable[[], Verdict]) -> Verdict:
        """Run ``body`` (or skip it) and record its row. An unexpected error is the row's
        failure, not a traceback (``KUBEGATE_DEBUG=1`` raises it)."""
        blocked = self.blocker(needs)
        if blocked is not None:
            return self.add(check, Verdict.skipped(blocked))
        self._on_start(check)
        try:
            verdict = body()
        except Exception as exc:
            if os.environ.get("KUBEGATE_DEBUG"):
                raise
            verdict = Verdict.failed(f"unexpected {type(exc).__name__}: {exc}")
        return self.add(check, verdict)

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.rows)


def trust_verdict(trust: Trust, server: str, version: str, advertised_ca: str | None) -> Verdict:
    """The ``server`` row once ``GET /api/v1/info`` answered: the version, and how the
    login trusts the server's TLS (a pinned CA by its fingerprint, the system's roots, or
    no verification at all, which is a warning)."""
    where = f"kubegate {version}"
    if trust.insecure:
        return Verdict.warn(
            f"{where}; TLS verification is OFF for this login",
            f"pin the CA: kubegate login {server} --certificate-authority FILE",
        )
    if trust.ca_pem is None:
        how = "plain HTTP, no TLS" if server.startswith("http://") else "the system's trusted roots"
        return Verdict.ok(f"{where}; TLS: {how}")
    pinned = fingerprint(trust.ca_pem)
    detail = f"{where}; TLS: CA pinned at login, SHA-256 {pinned}"
    if advertised_ca and fingerprint(advertised_ca) != pinned:
        return Verdict.warn(
            f"{detail}; the server now advertises another CA ({fingerprint(advertised_ca)})",
            f"if the admin changed the CA on purpose, log in again: kubegate login {server}",
        )
    return Verdict.ok(detail)


def cluster_verdict(cluster: Mapping[str, Any], now: dt.datetime) -> Verdict:
    """The ``cluster`` row: online, or offline since when."""
    name = f"{cluster.get('name')} ({cluster.get('id')})"
    seen = ago(cluster.get("last_seen_at"), now) if cluster.get("last_seen_at") else "never"
    if not cluster.get("online"):
        return Verdict.failed(
            f"{name}: the cluster's agent is not connected (last seen {seen})",
            "ask an admin to check the agent (its logs, and that it reaches the server)",
        )
    if not cluster.get("server"):
        return Verdict.failed(
            f"{name} is online but has no proxy URL: the access gateway is off",
            "ask an admin to turn the access gateway on (KUBEGATE_GATEWAY_ENABLED=true)",
        )
    return Verdict.ok(f"{name} is online; its agent was last seen {seen}")


@dataclass(frozen=True, slots=True)
class GrantVerdict:
    """The ``grant`` row, the namespace the kubectl checks use and the role held there."""

    verdict: Verdict
    namespace: str | None = None
    role: str | None = None


def _scope(grant: Mapping[str, Any]) -> str:
    namespace = grant.get("namespace")
    return f"in namespace {namespace}" if namespace else "cluster-wide"


def _grant_text(grant: Mapping[str, Any]) -> str:
    status = str(grant.get("status"))
    why = f": {grant['status_detail']}" if grant.get("status_detail") else ""
    return f"{grant.get('role')} {_scope(grant)} ({status}{why})"


def strongest_role(grants: Sequence[Mapping[str, Any]]) -> str | None:
    roles = [str(g.get("role")) for g in grants]
    known = [r for r in ROLE_ORDER if r in roles]
    return known[-1] if known else (roles[0] if roles else None)


def grant_verdict(
    grants: Sequence[Mapping[str, Any]], wanted: str | None, cluster: str, email: str
) -> GrantVerdict:
    """Whether an applied grant lets the kubectl checks run, and in which namespace:
    ``--namespace`` if a grant covers it; else the one namespace granted; else ``default``
    when a grant is cluster-wide; else the first of several (the others named)."""
    ask = f"kubegate cluster access grant {email or 'EMAIL'} --cluster {cluster} --role edit"
    if not grants:
        return GrantVerdict(
            Verdict.failed(
                f"you hold no grant on {cluster}", f"ask an admin for one ({ask} --namespace NS)"
            )
        )
    applied = [g for g in grants if g.get("status") == "applied"]
    if not applied:
        statuses = {str(g.get("status")) for g in grants}
        if "pending" in statuses:
            advice = "the agent has not applied it yet: run kubegate doctor again in a moment"
        elif "cluster_offline" in statuses:
            advice = "the cluster's agent is offline: ask an admin to check it"
        else:
            advice = "ask an admin to look at the grant's error (kubegate cluster access list)"
        listed = "; ".join(_grant_text(g) for g in grants)
        return GrantVerdict(Verdict.failed(f"no grant is applied yet: {listed}", advice))
    cluster_wide = [g for g in applied if not g.get("namespace")]
    namespaces = sorted({str(g["namespace"]) for g in applied if g.get("namespace")})
    note = ""
    if wanted is not None:
        covering = [g for g in applied if not g.get("namespace") or g.get("namespace") == wanted]
        if not covering:
            use = " or ".join(f"--namespace {n}" for n in namespaces)
            return GrantVerdict(
                Verdict.failed(
                    f"your grants are for namespace {', '.join(namespaces)}, not {wanted}",
                    f"use {use} (or ask an admin: {ask} --namespace {wanted})",
                )
            )
        namespace = wanted
    elif cluster_wide:
        namespace, covering = "default", cluster_wide
    else:
        namespace = namespaces[0]
        covering = [g for g in applied if g.get("namespace") == namespace]
        if len(namespaces) > 1:
            note = f"; also granted: {', '.join(namespaces[1:])} (pass --namespace to check one)"
    role = strongest_role(covering)
    held = "; ".join(_grant_text(g) for g in covering)
    return GrantVerdict(
        Verdict.ok(f"{held}; checking namespace {namespace}{note}"), namespace, role
    )


def token_verdict(expires_at: dt.datetime, minted_at: dt.datetime, now: dt.datetime) -> Verdict:
    """The ``kube token`` row: minted now or reused from the cache, and when it expires."""
    how = (
        "minted"
        if minted_at >= now - dt.timedelta(seconds=1)  # the cache keeps whole-ish seconds
        else f"reused from the cache (minted {ago(minted_at.isoformat(), now)})"
    )
    until = ago(expires_at.isoformat(), now)
    when = expires_at.astimezone(dt.UTC).strftime("%H:%M:%S UTC")
    return Verdict.ok(f"{how} through the exec plugin; expires {until} ({when})")


def document(rows: Sequence[Row], versions: Mapping[str, str | None]) -> dict[str, Any]:
    """``-o json``: every row, the versions seen, and whether nothing failed."""
    return {
        "ok": not any(r.status is Status.FAIL for r in rows),
        "versions": dict(versions),
        "checks": [r.as_dict() for r in rows],
    }


def summary(rows: Sequence[Row]) -> str:
    """The sentence under the table: how many passed, and which failed."""
    counts = {s: sum(1 for r in rows if r.status is s) for s in Status}
    parts = [f"{counts[s]} {label}" for s, label in _LABELS if counts[s]]
    failed = [r.check for r in rows if r.status is Status.FAIL]
    tail = f": {', '.join(failed)}" if failed else ""
    return f"{len(rows)} checks: {', '.join(parts)}{tail}."


_LABELS = (
    (Status.PASS, "passed"),
    (Status.WARN, "warned"),
    (Status.SKIP, "skipped"),
    (Status.FAIL, "failed"),
)
