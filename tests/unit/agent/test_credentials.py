"""How the agent reads its apiserver connection from a kubeconfig: URL, trust, credential."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from kubegate.agent.client import TunnelTarget
from kubegate.agent.credentials import TOKEN_REREAD_SECONDS, ApiServer, TokenFile, tls_context
from kubegate.agent.runner import AgentOptions, run_agent
from kubegate.agent.upstream import Upstream
from kubegate.errors import KubegateError
from kubegate.pki import CertificateAuthority


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def single(
    cluster: dict[str, Any], user: dict[str, Any] | None = None, fname: Path | None = None
) -> SingleConfig:
    document: dict[str, Any] = {
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}] if user is not None else [],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u" if user else None}}],
        "current-context": "x",
    }
    config = KubeConfig.from_dict(document, fname=fname).get()
    assert config is not None
    return config


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test-cluster-ca")


# --- the server URL ---------------------------------------------------------------------------


def test_server_url_with_port_gives_host_port_and_host_header() -> None:
    server = ApiServer.from_url("https://10.0.0.1:6443")
    assert (server.host, server.port, server.base_path) == ("10.0.0.1", 6443, "")
    assert server.host_header == "10.0.0.1:6443"


def test_server_url_without_port_uses_the_scheme_default() -> None:
    assert ApiServer.from_url("https://api.example.com").port == 443
    assert ApiServer.from_url("http://localhost").port == 80
    assert ApiServer.from_url("https://api.example.com").host_header == "api.example.com"


def test_ipv6_server_behind_a_path_prefix() -> None:
    server = ApiServer.from_url("https://[fd00::1]:6443/k8s/clusters/c-1/")
    assert (server.host, server.port) == ("fd00::1", 6443)
    assert server.base_path == "/k8s/clusters/c-1"
    assert server.host_header == "[fd00::1]:6443"
    assert server.origin == "https://[fd00::1]:6443"


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com:6443", "https://:6443"])
def test_server_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(KubegateError, match="server"):
        ApiServer.from_url(url)


# --- the credential ---------------------------------------------------------------------------


def test_exec_plugin_user_is_refused_at_start_with_a_clear_error() -> None:
    config = single(
        {"server": "https://k.example.com"},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
    )
    with pytest.raises(KubegateError, match="exec credential plugin"):
        Upstream.from_config(config)


def test_static_token_becomes_a_bearer_authorization() -> None:
    config = single({"server": "http://k.example.com"}, {"token": "abc.def"})
    assert Upstream.from_config(config).authorization() == "Bearer abc.def"


def test_client_certificate_user_sends_no_authorization(ca: CertificateAuthority) -> None:
    client = ca.issue("agent", client=True)
    config = single(
        {"server": "https://k.example.com", "certificate-authority-data": b64(ca.cert_pem)},
        {"client-certificate-data": b64(client.cert_pem), "client-key-data": b64(client.key_pem)},
    )
    assert Upstream.from_config(config).authorization() is None


def test_token_file_is_reread_once_the_interval_passed(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    clock = Clock()
    token = TokenFile(path, clock=clock)
    path.write_text("rotated\n")

    clock.now += TOKEN_REREAD_SECONDS - 1
    before = token.authorization()
    clock.now += 1
    after = token.authorization()

    assert (before, after) == ("Bearer first", "Bearer rotated")


def test_token_file_that_disappears_keeps_the_last_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("kept")
    clock = Clock()
    token = TokenFile(path, clock=clock)
    path.unlink()
    clock.now += TOKEN_REREAD_SECONDS
    assert token.authorization() == "Bearer kept"


def test_unreadable_token_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(KubegateError, match="token file"):
        TokenFile(tmp_path / "missing")


def test_in_cluster_service_account_uses_its_token_file(
    tmp_path: Path, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token-1")
    (tmp_path / "namespace").write_text("kubegate-system")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    clock = Clock()
    config = KubeConfig.from_service_account(tmp_path).get()
    assert config is not None
    upstream = Upstream.from_config(config, clock=clock)

    (tmp_path / "token").write_text("sa-token-2")
    clock.now += TOKEN_REREAD_SECONDS

    assert upstream.authorization() == "Bearer sa-token-2"
    assert upstream.server.host_header == "10.0.0.1:443"


# --- TLS --------------------------------------------------------------------------------------


def test_cluster_ca_data_is_the_only_trust(ca: CertificateAuthority) -> None:
    ctx = tls_context(
        single({"server": "https://k.example.com", "certificate-authority-data": b64(ca.cert_pem)})
    )
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test-cluster-ca"),),)]


def test_cluster_ca_file_is_found_next_to_the_kubeconfig(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    client = ca.issue("agent", client=True)
    client.write(tmp_path / "client.crt", tmp_path / "client.key")
    kubeconfig = tmp_path / "config"
    config = single(
        {"server": "https://k.example.com", "certificate-authority": "ca.crt"},
        {"client-certificate": "client.crt", "client-key": "client.key"},
        fname=kubeconfig,
    )
    ctx = tls_context(config)
    assert ctx is not None
    assert len(ctx.get_ca_certs()) == 1


def test_insecure_skip_tls_verify_turns_verification_off() -> None:
    ctx = tls_context(single({"server": "https://k.example.com", "insecure-skip-tls-verify": True}))
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_plain_http_server_has_no_tls() -> None:
    assert tls_context(single({"server": "http://127.0.0.1:8080"})) is None


def test_broken_client_key_is_a_clear_error(ca: CertificateAuthority) -> None:
    client = ca.issue("agent", client=True)
    config = single(
        {"server": "https://k.example.com", "certificate-authority-data": b64(ca.cert_pem)},
        {"client-certificate-data": b64(client.cert_pem), "client-key-data": b64(b"junk")},
    )
    with pytest.raises(KubegateError, match="cannot set up TLS"):
        tls_context(config)


# --- the agent refuses to start ---------------------------------------------------------------


@pytest.mark.anyio
async def test_agent_with_an_exec_plugin_kubeconfig_stops_before_dialing(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    document = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [
            {
                "name": "u",
                "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}},
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    kubeconfig.write_text(yaml.safe_dump(document))
    target = TunnelTarget(server_url="https://127.0.0.1:1", cluster_token="kg_agent_x")
    with pytest.raises(KubegateError, match="exec credential plugin"):
        await run_agent(AgentOptions(target=target, kubeconfig=kubeconfig))
