"""What a client learns about a server before signing in."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServerInfo(BaseModel):
    """Public facts about this server, for the CLI's login (trust on first use of ``ca_pem``)
    and ``doctor``. Nothing in it is secret: it is served without authentication."""

    version: str = Field(description="The kubegate version the server runs.")
    gateway_enabled: bool = Field(
        description="Whether the access gateway (grants, kube tokens, the proxy) is on."
    )
    proxy_url: str | None = Field(
        description="The Kubernetes API proxy's base URL as clients reach it (a cluster is at "
        "<proxy_url>/clusters/<id>); null while the access gateway is disabled."
    )
    ca_pem: str | None = Field(
        description="PEM of the CA clients should trust for this server and its proxy (the "
        "data dir's self-signed CA, or the operator's tls_cert_file); null when TLS is off."
    )
    password_login: bool = Field(
        description="Whether POST /api/v1/auth/login accepts an email and password."
    )
