"""What a client learns about a server before signing in."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SsoInfo(BaseModel):
    """The single sign-on provider people sign in with on this server."""

    display_name: str = Field(description="What a sign-in button calls the provider.")
    login_path: str = Field(
        description="Where a browser starts an SSO sign-in on this server (add ?next=/path to "
        "come back to a page); the CLI signs in with kubegate login SERVER --sso."
    )


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
        description="Whether POST /api/v1/auth/login and POST /org/login accept an email and "
        "password (the password_login setting); when false they answer 403."
    )
    sso: SsoInfo | None = Field(
        default=None, description="The single sign-on provider; null when none is configured."
    )
