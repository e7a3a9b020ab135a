"""``kubegate doctor``: check every hop from this machine's kubectl to the cluster.

kubectl → kubegate's proxy → the tunnel → the cluster's agent → kube-apiserver: each hop
is one row (pass, warn, fail or skip, what was seen, what to do), in the order a request
takes them, and a hop that failed skips the rows that need it (``needs: <check>``). The
login, the server, the cluster, the grant and the kube token are asked of the REST API and
the exec plugin's own code; the rest runs the user's ``kubectl`` through a temporary
kubeconfig (``doctor_kubectl.py``). Nothing is created unless ``--scratch`` asks for a
ConfigMap (deleted again). A missing login is a row, not an early exit, so ``-o json``
always has every check.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.table import Table
from rich.text import Text

from kubegate.cli import config_store, kube_token, kubeconfig_cmd
from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application, application
from kubegate.cli.clusters import ClusterOption
from kubegate.cli.config_store import Login
from kubegate.cli.doctor_kubectl import TRANSPORTS, KubectlChecks
from kubegate.cli.doctor_report import (
    GrantVerdict,
    Report,
    Row,
    Status,
    Verdict,
    cluster_verdict,
    document,
    grant_verdict,
    summary,
    token_verdict,
    trust_verdict,
)
from kubegate.cli.kubectl_output import Asker
from kubegate.cli.kubectl_runner import Kubectl
from kubegate.cli.login import OutputOption, ago_until
from kubegate.cli.output import Format

STREAM_KINDS = ("exec", "attach", "cp", "port-forward")
SCRATCH = "write (scratch)"
NOT_ASKED = Verdict.skipped("not asked: --scratch creates and deletes a ConfigMap")
STATUS_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: "dim"}


def _run_hint(message: str) -> str:
    """The ``run: ...`` a message ends with, as advice (empty when there is none)."""
    return f"run: {message.rsplit('run: ', 1)[1]}" if "run: " in message else ""


def _reason(message: str) -> str:
    return message.split("; run: ", 1)[0]


class Diagnosis:
    """One doctor run: the checks in order and what each found for the next."""

    def __init__(self, app: Application, report: Report, now: dt.datetime) -> None:
        self.app = app
        self.report = report
        self.now = now
        self.login: Login | None = None
        self.api: ApiClient | None = None
        self.info: dict[str, Any] = {}
        self.cluster: dict[str, Any] = {}
        self.grant = GrantVerdict(Verdict.skipped(""))
        self.versions: dict[str, str | None] = {
            "kubegate_server": None,
            "kubectl_client": None,
            "kubernetes": None,
        }

    def close(self) -> None:
        if self.api is not None:
            self.api.__exit__()

    # -- the REST API's hops ----------------------------------------------------------------

    def check_login(self) -> Verdict:
        try:
            config = self.app.config()
        except config_store.StoreError as exc:
            return Verdict.failed(str(exc))
        login = config.login(None)
        if login is None:
            if config.logins:
                return Verdict.failed("no current server", "run: kubegate server use SERVER")
            return Verdict.failed("not logged in", "run: kubegate login SERVER")
        self.login = login
        again = f"run: kubegate login {login.server}"
        expires = login.credential.expires_at
        if login.credential.expired(self.now):
            return Verdict.failed(
                f"your login to {login.server} expired {ago_until(expires)}", again
            )
        self.api = self.app.api(login)
        try:
            me = self.api.get("/api/v1/me")
        except ApiError as exc:
            if exc.status == 401:
                return Verdict.failed(
                    f"{login.server} refused your login: {_reason(exc.message)}", again
                )
            return Verdict.failed(
                f"could not check the login: {_reason(exc.message)}", "see the server row"
            )
        user = me.get("user") or {}
        until = f"; expires {ago_until(expires)}" if expires else ""
        return Verdict.ok(
            f"{user.get('email')} ({user.get('role')}, {me.get('org_name', '')}) "
            f"on {login.server}{until}"
        )

    def check_server(self) -> Verdict:
        login = self.login
        if login is None:
            return Verdict.skipped("needs: login")
        try:
            with ApiClient(login.server, login.trust) as anonymous:
                self.info = dict(anonymous.get("/api/v1/info"))
        except ApiError as exc:
            advice = (
                f"if its CA changed on purpose, log in again: kubegate login {login.server}"
                if "not trusted" in exc.message
                else "check the URL, and that the server runs and is reachable from here"
            )
            return Verdict.failed(_reason(exc.message), advice)
        version = str(self.info.get("version"))
        self.versions["kubegate_server"] = version
        if not self.info.get("gateway_enabled"):
            return Verdict.failed(
                f"kubegate {version} at {login.server}: its access gateway is off",
                "ask an admin to turn it on (KUBEGATE_GATEWAY_ENABLED=true)",
            )
        return trust_verdict(login.trust, login.server, version, self.info.get("ca_pem"))

    def check_cluster(self, wanted: str | None) -> Verdict:
        assert self.login is not None and self.api is not None
        if wanted is None and self.login.cluster is None:
            return Verdict.failed(
                "no cluster given and none selected",
                "pass --cluster NAME, or choose a default: kubegate cluster select NAME",
            )
        try:
            self.cluster = self.app.cluster(self.api, self.login, wanted)
        except typer.Exit:  # it said why on stderr
            return Verdict.failed(
                f"{self.login.server} has no cluster named {wanted!r}",
                "see: kubegate cluster list",
            )
        except ApiError as exc:
            return Verdict.failed(_reason(exc.message), _run_hint(exc.message))
        return cluster_verdict(self.cluster, self.now)

    def check_grant(self, namespace: str | None) -> Verdict:
        assert self.login is not None
        self.grant = grant_verdict(
            self.cluster.get("my_access") or [],
            namespace,
            str(self.cluster.get("name")),
            self.login.email,
        )
        return self.grant.verdict

    def check_token(self) -> Verdict:
        assert self.login is not None
        environ = {k: v for k, v in self.app.environ.items() if k != "KUBERNETES_EXEC_INFO"}
        args = kube_token.Args(cluster=str(self.cluster["id"]), server=self.login.server)
        try:
            token = kube_token.get_token(args, environ, self.now)
        except (kube_token.PluginError, config_store.StoreError) as exc:
            return Verdict.failed(_reason(str(exc)), _run_hint(str(exc)))
        except OSError as exc:
            return Verdict.failed(f"cannot use the token cache: {exc.strerror or exc}")
        return token_verdict(token.expires_at, token.minted_at, self.now)

    # -- kubectl ----------------------------------------------------------------------------

    def kubectl_rows(self, binary: str | None, options: KubectlOptions) -> None:
        """The kubectl rows, with a kubeconfig in a private temp dir removed afterwards."""
        why = self.report.blocker(["kube token"])
        found = _find_kubectl(binary, self.app.environ) if why is None else None
        if why is not None or isinstance(found, Verdict) or found is None:
            if isinstance(found, Verdict):
                self.report.add("kubectl", found)
            self._skip_kubectl(options, why or "needs: kubectl", with_version=why is not None)
            return
        assert self.login is not None and self.api is not None
        namespace = self.grant.namespace or "default"
        entry = kubeconfig_cmd.entry_for(
            self.app,
            self.api,
            self.login,
            self.cluster,
            self.info,
            namespace,
            False,  # the exec plugin, as `kubegate cluster kubeconfig add` writes it
            None,
            self.login.trust.insecure,
        )
        asker = Asker(
            server=self.login.server,
            cluster=str(self.cluster.get("name")),
            email=self.login.email,
            namespace=namespace,
            role=self.grant.role,
        )
        with tempfile.TemporaryDirectory(prefix="kubegate-doctor-") as temp:
            kubeconfig = Path(temp) / "kubeconfig"
            from kubegate.cli.kubeconfig_edit import standalone  # ruamel: only when checking

            config_store.write_private(kubeconfig, standalone(entry))
            kubectl = Kubectl(found, kubeconfig, self.app.environ)
            prefix = urlsplit(str(self.cluster.get("server") or "")).path
            checks = KubectlChecks(kubectl, asker, Path(temp), prefix)
            try:
                self._run_kubectl(checks, options)
            finally:
                self.versions["kubectl_client"] = checks.client_version
                self.versions["kubernetes"] = checks.server_version

    def _run_kubectl(self, checks: KubectlChecks, options: KubectlOptions) -> None:
        run = self.report.run
        run("kubectl", [], checks.version)
        run("get", ["kubectl"], checks.get)
        run("watch", ["kubectl"], checks.watch)
        run("pod", ["get"], lambda: checks.choose_pod(options.pod))
        run("logs -f", ["pod"], checks.logs)
        for kind in STREAM_KINDS:
            for transport in TRANSPORTS:
                run(f"{kind} ({transport})", ["pod"], _pod_check(checks, kind, transport, options))
        if options.scratch:
            run(SCRATCH, ["kubectl"], checks.write)
        else:
            self.report.add(SCRATCH, NOT_ASKED)

    def _skip_kubectl(self, options: KubectlOptions, why: str, with_version: bool) -> None:
        names = ["kubectl"] if with_version else []
        names += ["get", "watch", "pod", "logs -f"]
        names += [f"{kind} ({t})" for kind in STREAM_KINDS for t in TRANSPORTS]
        for name in names:
            self.report.add(name, Verdict.skipped(why))
        self.report.add(SCRATCH, Verdict.skipped(why) if options.scratch else NOT_ASKED)


@dataclass(frozen=True, slots=True)
class KubectlOptions:
    """What the command line says about the kubectl checks."""

    pod: str | None
    scratch: bool
    cp_path: str


def _pod_check(
    checks: KubectlChecks, kind: str, transport: str, options: KubectlOptions
) -> Callable[[], Verdict]:
    def body() -> Verdict:
        if kind == "exec":
            return checks.exec(transport)
        if kind == "attach":
            return checks.attach(transport)
        if kind == "cp":
            return checks.cp(transport, options.cp_path)
        if checks.port is None:
            return Verdict.skipped(f"pod {checks.pod} declares no containerPort")
        return checks.port_forward(transport)

    return body


def _find_kubectl(given: str | None, environ: Mapping[str, str]) -> str | Verdict:
    """``--kubectl`` (a path or a name on PATH), else ``kubectl`` on PATH."""
    name = given or "kubectl"
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is None:
        if given:
            return Verdict.failed(f"--kubectl {given} is not an executable", "pass --kubectl PATH")
        return Verdict.failed("no kubectl on PATH", "install kubectl, or pass --kubectl PATH")
    return found


def doctor(
    ctx: typer.Context,
    cluster: ClusterOption = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace to check in (default: the one your grant is for, else default).",
            show_default=False,
        ),
    ] = None,
    pod: Annotated[
        str | None,
        typer.Option(
            help="Pod for logs, exec, attach, cp and port-forward (default: the "
            "first Running pod).",
            show_default=False,
        ),
    ] = None,
    scratch: Annotated[
        bool,
        typer.Option("--scratch", help="Also check writes: create and delete a ConfigMap."),
    ] = False,
    kubectl: Annotated[
        str | None,
        typer.Option(
            help="The kubectl to check with (default: kubectl on PATH).", show_default=False
        ),
    ] = None,
    cp_path: Annotated[
        str, typer.Option(help="File in the pod that the cp check downloads.")
    ] = "/etc/hostname",
    output: OutputOption = Format.table,
) -> None:
    """Check every hop from your kubectl to the cluster, and say what to do about a failure.

    Login, server and TLS, the cluster's agent, your grant, a kube token, then your kubectl
    through kubegate: version, get, watch, logs -f, and exec, attach, cp and port-forward
    over WebSocket and over SPDY. A failed hop skips what needs it. Exits 1 if a check
    failed. It creates nothing unless --scratch asks (a ConfigMap, deleted again).

    Examples:

    ```
    kubegate doctor
    kubegate doctor --cluster prod --namespace dev --pod web-0
    kubegate doctor --scratch --kubectl /usr/local/bin/kubectl-1.33 -o json
    ```
    """
    app = application(ctx)
    with app.output.err.status("kubegate doctor: login…") as spinner:
        report = Report(on_start=lambda name: spinner.update(f"kubegate doctor: {name}…"))
        diagnosis = Diagnosis(app, report, dt.datetime.now(dt.UTC))
        try:
            report.run("login", [], diagnosis.check_login)
            report.run("server", [], diagnosis.check_server)
            report.run("cluster", ["login", "server"], lambda: diagnosis.check_cluster(cluster))
            report.run("grant", ["cluster"], lambda: diagnosis.check_grant(namespace))
            report.run("kube token", ["grant"], diagnosis.check_token)
            diagnosis.kubectl_rows(kubectl, KubectlOptions(pod, scratch, cp_path))
        finally:
            diagnosis.close()
    if output is Format.table:
        app.output.out.print(table(report.rows))
        app.output.say(summary(report.rows))
    else:
        app.output.document(document(report.rows, diagnosis.versions), output)
    if report.failed:
        raise typer.Exit(1)


def table(rows: list[Row]) -> Table:
    """The rows as the CLI's listings look (``output.py``), except that long details and
    advice fold instead of being cut: a fingerprint or a command must survive whole."""
    shown = Table(box=None, pad_edge=False, header_style="bold")
    for header in ("CHECK", "STATUS"):
        shown.add_column(header, no_wrap=True)
    for header in ("DETAIL", "ADVICE"):
        shown.add_column(header, overflow="fold")
    for row in rows:
        shown.add_row(
            Text(row.check),
            Text(row.status.value, style=STATUS_STYLE[row.status]),
            Text(row.detail),
            Text(row.advice),
        )
    return shown
