"""Downloading a kubeconfig (REST ``POST /api/v1/clusters/{id}/kubeconfig`` and the portal's
``POST /org/clusters/{id}/access/kubeconfig``) on SQLite and PostgreSQL.

A kubeconfig embeds a freshly minted kube token, so it answers exactly like minting one: the
same 403, 404, 409 and the same rate limit.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from kubegate.pki import CertificateAuthority
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    NO_ACCESS,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant,
    granted_member,
    kube_token_rows,
    me,
    org_id_of,
    sha256,
    token_path,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api, make_settings, serving
from tests.fixtures.kube import Kubectl
from tests.fixtures.portal import Portal, access_path, sign_in


def kubeconfig_path(cluster_id: str) -> str:
    return f"/api/v1/clusters/{cluster_id}/kubeconfig"


def parse(response: httpx.Response) -> dict[str, Any]:
    """The kubeconfig of a successful download."""
    assert response.status_code == 200, response.text
    config: dict[str, Any] = yaml.safe_load(response.text)
    return config


def only(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """The single entry of ``clusters``, ``users`` or ``contexts``."""
    [entry] = config[kind]
    assert isinstance(entry, dict)
    return entry


# --- the document ------------------------------------------------------------------------


def test_kubeconfig_is_a_complete_config_for_the_cluster(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    response = api.post(kubeconfig_path(cluster_id), member[1])
    config = parse(response)
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.headers["content-disposition"] == (
        'attachment; filename="kubegate-prod.kubeconfig"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert (config["apiVersion"], config["kind"]) == ("v1", "Config")
    assert config["current-context"] == "kubegate-prod"
    cluster, user, context = (only(config, k) for k in ("clusters", "users", "contexts"))
    assert cluster["name"] == user["name"] == context["name"] == "kubegate-prod"
    assert context["context"] == {"cluster": "kubegate-prod", "user": "kubegate-prod"}
    # Plain HTTP here (tls false): nothing to trust. The proxy listens on a free port.
    assert set(cluster["cluster"]) == {"server"}
    assert re.fullmatch(
        rf"http://127\.0\.0\.1:[1-9][0-9]*/clusters/{cluster_id}", cluster["cluster"]["server"]
    )
    token = user["user"]["token"]
    assert token.startswith("kg_kube_") and set(user["user"]) == {"token"}
    [row] = kube_token_rows(db, cluster_id=cluster_id)
    assert (row.token_hash, row.user_id, row.token_epoch) == (sha256(token), member[0], 0)


def test_kubectl_reads_the_kubeconfig_and_uses_its_context(
    api: Api, member: tuple[str, str], kubectl: Kubectl, tmp_path: Path
) -> None:
    cluster_id = granted_member(api, member)
    path = tmp_path / "kubegate-prod.kubeconfig"
    path.write_text(api.post(kubeconfig_path(cluster_id), member[1]).text)
    result = kubectl.run("config", "view", "--minify", "--raw", "-o", "json", kubeconfig=path)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["current-context"] == "kubegate-prod"
    assert view["clusters"][0]["cluster"]["server"].endswith(f"/clusters/{cluster_id}")
    assert view["users"][0]["user"]["token"].startswith("kg_kube_")


def test_kubeconfig_mint_is_audited_as_via_kubeconfig(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    token = only(parse(api.post(kubeconfig_path(cluster_id), member[1])), "users")["user"]
    [event] = audit_events(db, "kube_token.mint")
    assert (event.result, event.actor_email, event.cluster_id) == (
        "success",
        MEMBER_EMAIL,
        cluster_id,
    )
    assert event.detail["via"] == "kubeconfig"
    assert token["token"] not in json.dumps(event.detail)


@pytest.fixture
def tls_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app with TLS on (its own CA in the data dir) and a public proxy URL.

    The test server itself still speaks plain HTTP; the kubeconfig only needs the CA.
    """
    settings = make_settings(
        database_url,
        tmp_path / "data",
        tls=True,
        proxy_public_url="https://kube.example.com:7443/",
    )
    with serving(settings) as api:
        yield api


def test_with_tls_the_kubeconfig_trusts_the_gateways_ca(tls_api: Api, db: Engine) -> None:
    api = tls_api
    cluster_id = add_cluster(api, "secure")
    grant(api, cluster_id, me(api))
    config = parse(api.post(kubeconfig_path(cluster_id)))
    cluster = only(config, "clusters")["cluster"]
    assert cluster["server"] == f"https://kube.example.com:7443/clusters/{cluster_id}"
    ca_file = Path(api.settings.data_dir) / "tls" / "ca.crt"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca_file.read_bytes()
    assert b"BEGIN CERTIFICATE" in ca_file.read_bytes()


@pytest.fixture
def operator_tls_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app serving an operator's certificate (``tls_cert_file``)."""
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
        yield api


def test_with_an_operator_certificate_the_kubeconfig_carries_that_pem(
    operator_tls_api: Api,
) -> None:
    api = operator_tls_api
    cluster_id = add_cluster(api)
    grant(api, cluster_id, me(api))
    cluster = only(parse(api.post(kubeconfig_path(cluster_id))), "clusters")["cluster"]
    assert api.settings.tls_cert_file is not None
    pem = api.settings.tls_cert_file.read_bytes()
    assert base64.b64decode(cluster["certificate-authority-data"]) == pem
    assert re.fullmatch(
        rf"https://gw\.example\.com:[1-9][0-9]*/clusters/{cluster_id}", cluster["server"]
    )


# --- refusals: the same as minting -------------------------------------------------------


def test_kubeconfig_refuses_like_minting(api: Api, member: tuple[str, str], db: Engine) -> None:
    cluster_id = add_cluster(api)
    sandbox = add_cluster(api, "play", kind="sandbox")
    _, foreign, _ = add_other_org(db)
    for path, token, status, message in [
        (kubeconfig_path(cluster_id), member[1], 403, NO_ACCESS),
        (kubeconfig_path(cluster_id), None, 403, NO_ACCESS),  # the admin, without a grant
        (
            kubeconfig_path(sandbox),
            member[1],
            409,
            "Sandbox clusters do not support Cluster Access",
        ),
        (kubeconfig_path(foreign), member[1], 404, f"cluster {foreign} not found"),
    ]:
        response = api.post(path, token)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["message"] == message
    unauthenticated = api.client.post(kubeconfig_path(cluster_id))
    assert unauthenticated.status_code == 401
    assert kube_token_rows(db) == []


def test_kubeconfigs_and_tokens_share_the_mint_rate_limit(mint_limited: Api, db: Engine) -> None:
    api = mint_limited
    cluster_id = add_cluster(api)
    user_id = add_user(db, org_id_of(api), MEMBER_EMAIL)
    token = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
    grant(api, cluster_id, user_id)
    assert api.post(token_path(cluster_id), token).status_code == 200
    assert api.post(kubeconfig_path(cluster_id), token).status_code == 200
    assert api.post(token_path(cluster_id), token).status_code == 200
    response = api.post(kubeconfig_path(cluster_id), token)
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


# --- the portal --------------------------------------------------------------------------


@pytest.fixture
def member_portal(api: Api, member: tuple[str, str]) -> Portal:
    """The member signed in to the portal."""
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def test_portal_downloads_a_kubeconfig_with_the_csrf_token(
    api: Api, member: tuple[str, str], member_portal: Portal, db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    response = member_portal.post(access_path(cluster_id, "kubeconfig"))
    config = parse(response)
    assert response.headers["content-disposition"] == (
        'attachment; filename="kubegate-prod.kubeconfig"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert config["current-context"] == "kubegate-prod"
    token = only(config, "users")["user"]["token"]
    [row] = kube_token_rows(db, cluster_id=cluster_id)
    assert (row.token_hash, row.user_id) == (sha256(token), member[0])


def test_portal_kubeconfig_needs_the_csrf_token(
    api: Api, member: tuple[str, str], member_portal: Portal, db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    response = member_portal.write("POST", access_path(cluster_id, "kubeconfig"), csrf=None)
    assert response.status_code == 403
    assert "X-CSRF-Token" in response.json()["error"]["message"]
    assert kube_token_rows(db, cluster_id=cluster_id) == []


def test_portal_kubeconfig_without_a_grant_is_refused_for_an_admin_too(
    api: Api, member_portal: Portal
) -> None:
    cluster_id = add_cluster(api)
    admin = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    for portal in (admin, member_portal):
        response = portal.post(access_path(cluster_id, "kubeconfig"))
        assert response.status_code == 403, response.text
        assert response.json()["error"]["message"] == NO_ACCESS


def test_openapi_documents_both_kubeconfig_endpoints_as_yaml_with_json_errors(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/clusters/{cluster_id}/kubeconfig",
        "/org/clusters/{cluster_id}/access/kubeconfig",
    ):
        responses = paths[path]["post"]["responses"]
        assert set(responses["200"]["content"]) == {"application/yaml"}
        for status in ("401", "403", "404", "409", "429"):
            assert responses[status]["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            }
