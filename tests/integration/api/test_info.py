"""``GET /api/v1/info``: what the CLI reads before signing in (version, proxy URL, the CA to
pin), on SQLite and PostgreSQL. It needs no credential, so it must hold nothing secret."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from kubegate import __version__
from kubegate.pki import CertificateAuthority
from tests.fixtures.access import add_cluster
from tests.fixtures.api import ADMIN_PASSWORD, Api, make_settings, serving

FIELDS = {"version", "gateway_enabled", "proxy_url", "ca_pem", "password_login", "sso"}


@pytest.fixture
def tls_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app with TLS on (the data dir's self-signed CA) behind a public proxy URL."""
    settings = make_settings(
        database_url, tmp_path / "data", tls=True, proxy_public_url="https://kube.example.com/"
    )
    with serving(settings) as api:
        yield api


def test_info_answers_without_a_credential(api: Api) -> None:
    response = api.client.get("/api/v1/info")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "version": __version__,
        "gateway_enabled": True,
        "proxy_url": api.proxy_url,
        "ca_pem": None,  # TLS is off here
        "password_login": True,
        "sso": None,  # no [oidc] here
    }


def test_with_tls_info_carries_the_ca_the_cli_pins(tls_api: Api) -> None:
    info = tls_api.client.get("/api/v1/info").json()
    assert info["proxy_url"] == "https://kube.example.com"
    ca_file = Path(tls_api.settings.data_dir) / "tls" / "ca.crt"
    assert info["ca_pem"].encode() == ca_file.read_bytes()
    ca = x509.load_pem_x509_certificate(info["ca_pem"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_client_trusting_only_ca_pem_verifies_the_proxy(tls_api: Api) -> None:
    ca_pem = tls_api.client.get("/api/v1/info").json()["ca_pem"]
    context = ssl.create_default_context(cadata=ca_pem)
    url = urlsplit(tls_api.proxy_url)
    assert url.scheme == "https" and url.hostname is not None and url.port is not None
    with (
        socket.create_connection((url.hostname, url.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=url.hostname) as tls,
    ):
        assert tls.version() is not None  # the handshake verified the chain and the name


def test_info_holds_nothing_secret(tls_api: Api) -> None:
    api = tls_api
    registered = api.post("/api/v1/clusters", json={"name": "prod"}).json()
    text = api.client.get("/api/v1/info").text
    key = (Path(api.settings.data_dir) / "tls" / "ca.key").read_text()
    assert set(api.client.get("/api/v1/info").json()) == FIELDS
    assert "PRIVATE KEY" not in text and key.strip().splitlines()[1] not in text
    for secret in (api.admin_token, ADMIN_PASSWORD, registered["agent_credential"]):
        assert secret not in text
    assert "kg_" not in text


def test_with_an_operator_certificate_info_carries_that_pem(
    database_url: str, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create("operator CA")
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue("kubegate", hosts=("gw.example.com",), server=True).write(cert_file, key_file)
    settings = make_settings(
        database_url,
        tmp_path / "data",
        tls=True,
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        tls_hosts=["gw.example.com"],
    )
    with serving(settings) as api:
        info = api.client.get("/api/v1/info").json()
    assert info["ca_pem"].encode() == cert_file.read_bytes()
    assert info["proxy_url"].startswith("https://gw.example.com:")


def test_with_the_gateway_disabled_info_says_so_and_names_no_proxy(gateway_off: Api) -> None:
    add_cluster(gateway_off)
    info = gateway_off.client.get("/api/v1/info").json()
    assert (info["gateway_enabled"], info["proxy_url"]) == (False, None)
    assert info["version"] == __version__ and info["password_login"] is True


def test_openapi_documents_info_as_needing_no_credential(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/api/v1/info"]["get"]
    assert "security" not in operation
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServerInfo"
    }
