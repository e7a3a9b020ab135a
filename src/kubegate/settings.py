"""kubegate's settings: environment variables (``KUBEGATE_*``) over a TOML config file.

Built once at start (``Settings.load``) and passed in; nothing reads settings from a global.
Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/kubegate``, or ``~/.local/share/kubegate``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kubegate"


MIN_METRICS_TOKEN = 16


class OidcSettings(BaseModel):
    """The organisation's OpenID Connect provider (``[oidc]`` in the config file,
    ``KUBEGATE_OIDC__<NAME>`` in the environment)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(
        description="The provider's issuer URL; its /.well-known/openid-configuration is read "
        "at the first sign-in and its keys (jwks_uri) whenever a token names an unknown key."
    )
    client_id: str = Field(description="kubegate's client id at the provider.")
    client_secret: SecretStr = Field(description="kubegate's client secret at the provider.")
    organization: str | None = Field(
        default=None,
        description="Name of the organisation whose members sign in here; unset means "
        "bootstrap_org_name.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"],
        description="Scopes asked for; add the provider's groups scope when admin_group is set.",
    )
    email_claim: str = Field(default="email", description="The ID token claim holding the email.")
    groups_claim: str = Field(
        default="groups", description="The ID token claim holding the user's groups."
    )
    allowed_email_domains: list[str] = Field(
        default_factory=list,
        description='Email domains that may sign in (e.g. ["example.com"]); empty means any.',
    )
    admin_group: str | None = Field(
        default=None,
        description="Members of this provider group are organisation admins, decided at every "
        "SSO sign-in (leaving the group demotes to member); unset: sign-in keeps roles.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) to trust for the provider's TLS; unset means the system's.",
    )
    display_name: str = Field(
        default="SSO", description="What the sign-in button calls the provider."
    )

    @field_validator("issuer")
    @classmethod
    def _https_issuer(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (OpenID Connect requires TLS)")
        return value.rstrip("/")

    @field_validator("allowed_email_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [domain.strip().lower().lstrip("@") for domain in value]


class Settings(BaseSettings):
    """Everything an operator can set."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEGATE_", env_nested_delimiter="__", extra="forbid"
    )
    _config_file: ClassVar[Path | None] = None

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the SQLite database, the TLS CA and keys live.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host/db); unset means SQLite in "
        "the data dir.",
    )
    host: str = Field(default="127.0.0.1", description="Address the API and portal listen on.")
    port: int = Field(default=8443, ge=0, le=65535, description="API and portal port.")
    tls: bool = Field(
        default=True,
        description="Serve HTTPS with the data dir's self-signed CA (or tls_cert_file).",
    )
    tls_cert_file: Path | None = Field(default=None, description="Own serving certificate.")
    tls_key_file: Path | None = Field(default=None, description="Key of tls_cert_file.")
    tls_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"],
        description="Names and IPs the self-signed serving certificate is valid for.",
    )
    gateway_enabled: bool = Field(
        default=True,
        description="When false, every access, token and proxy endpoint answers 404.",
    )
    public_url: str | None = Field(
        default=None,
        description="The API and portal's base URL as browsers and the CLI reach it (the OIDC "
        "redirect URI and the device login page are under it); unset means "
        "https://<first tls_hosts entry>:<port>.",
    )
    password_login: bool = Field(
        default=True,
        description="Whether local users may sign in with a password; false refuses every "
        "password login (SSO and access keys only).",
    )
    oidc: OidcSettings | None = Field(
        default=None, description="The OpenID Connect provider people sign in with (SSO)."
    )
    api_token_ttl_seconds: int = Field(
        default=7 * 86400,
        gt=0,
        description="Absolute lifetime of a CLI login (kubegate login, with a password or SSO).",
    )
    api_token_idle_seconds: int = Field(
        default=86400,
        gt=0,
        description="A CLI login unused for this long ends; each use moves this forward.",
    )
    session_ttl_seconds: int = Field(
        default=12 * 3600, gt=0, description="Absolute lifetime of a portal session."
    )
    session_idle_seconds: int = Field(
        default=3600,
        gt=0,
        description="A portal session unused for this long ends; each request moves it forward.",
    )
    device_code_ttl_seconds: int = Field(
        default=600,
        ge=60,
        le=3600,
        description="How long a kubegate login --sso code waits for its approval.",
    )
    device_poll_interval_seconds: int = Field(
        default=5, ge=1, le=60, description="How often the CLI polls while it waits (RFC 8628)."
    )
    kube_token_ttl_seconds: int = Field(
        default=900,
        gt=0,
        le=86400,
        description="Lifetime of a kube token (the bearer kubectl sends to the proxy).",
    )
    service_account_kubeconfig_max_seconds: int = Field(
        default=7 * 86400,
        ge=600,
        le=365 * 86400,
        description="Longest lifetime of a service account's kubeconfig token (either mode).",
    )
    admin_kubeconfig_max_seconds: int = Field(
        default=4 * 3600,
        ge=600,
        le=86400,
        description="Longest lifetime of an admin (break-glass) kubeconfig's token.",
    )
    kube_token_mints_per_minute: int = Field(
        default=60,
        gt=0,
        description="Kube tokens one user may mint per minute (per server process); the "
        "burst equals this number, refilled evenly over the minute.",
    )
    proxy_port: int = Field(
        default=6443,
        ge=0,
        le=65535,
        description="Port of the Kubernetes API proxy's own listener (same host and TLS as "
        "the API).",
    )
    proxy_public_url: str | None = Field(
        default=None,
        description="The proxy's base URL written into kubeconfigs; unset means "
        "https://<first tls_hosts entry>:<proxy_port> (http:// when tls is false).",
    )
    proxy_requests_per_second: float = Field(
        default=50.0,
        gt=0,
        description="Requests per second one identity may send through the proxy (sustained rate).",
    )
    proxy_request_burst: int = Field(
        default=100,
        ge=1,
        description="Requests one identity may send through the proxy at once, before "
        "proxy_requests_per_second applies.",
    )
    proxy_max_watches: int = Field(
        default=100, ge=1, description="Open watches (and `logs -f`) per identity."
    )
    proxy_max_streams: int = Field(
        default=20, ge=1, description="Open exec, attach and port-forward streams per identity."
    )
    audit_retention_days: int | None = Field(
        default=90,
        ge=0,
        le=36500,
        description="Audit events older than this many days are deleted (in the background, "
        "hourly); 0 or unset keeps them forever.",
    )
    audit_queue_max_events: int = Field(
        default=50_000,
        ge=1,
        le=10_000_000,
        description="Proxied-request audit events held in memory while the database is slow "
        "or down; beyond this the oldest are dropped and counted.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest request body the API accepts."
    )
    bootstrap_org_name: str = Field(
        default="default", description="Name of the organisation created on first start."
    )
    bootstrap_admin_email: str = Field(
        default="admin@kubegate.local", description="Email of the admin created on first start."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None,
        description="Password for that admin; unset means a random one printed once.",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    metrics: Literal["open", "token", "off"] | None = Field(
        default=None,
        description="Who may read GET /metrics (Prometheus): open (anyone who reaches the "
        "port), token (Authorization: Bearer <metrics_token>) or off (404); unset means token "
        "when metrics_token is set, else off.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="The bearer token Prometheus sends for /metrics (at least 16 characters).",
    )

    @field_validator("metrics_token")
    @classmethod
    def _long_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN:
            raise ValueError(
                f"must be at least {MIN_METRICS_TOKEN} characters (e.g. openssl rand -hex 32)"
            )
        return value

    @model_validator(mode="after")
    def _metrics_token_when_asked(self) -> Settings:
        if self.metrics == "token" and self.metrics_token is None:
            raise ValueError("metrics = token needs metrics_token (KUBEGATE_METRICS_TOKEN)")
        return self

    def metrics_access(self) -> Literal["open", "token", "off"]:
        """How ``/metrics`` is protected: ``metrics``, else ``token`` when a
        ``metrics_token`` is set, else ``off``."""
        if self.metrics is not None:
            return self.metrics
        return "token" if self.metrics_token is not None else "off"

    @field_validator("proxy_public_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://kube.example.com")
        return value

    def base_url(self, *, bound_port: int | None = None) -> str:
        """The API and portal's base URL as clients reach it, without a trailing slash:
        ``public_url``, else ``https://<first tls_hosts entry>:<port>`` (``bound_port``
        stands in for a ``port`` of 0, as in :meth:`proxy_url`)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        port = bound_port if self.port == 0 and bound_port else self.port
        return f"{self._scheme_host()}:{port}"

    def _scheme_host(self) -> str:
        host = self.tls_hosts[0] if self.tls_hosts else "localhost"
        try:
            if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
                host = f"[{host}]"
        except ValueError:
            pass  # a DNS name, or an address already in brackets
        return f"{'https' if self.tls else 'http'}://{host}"

    def proxy_url(self, *, bound_port: int | None = None) -> str:
        """The Kubernetes API proxy's base URL as clients reach it, without a trailing slash:
        ``proxy_public_url``, else ``https://<first tls_hosts entry>:<proxy_port>`` (``http``
        when ``tls`` is false; an IPv6 address in brackets).

        ``bound_port`` is the port the running proxy listens on: it stands in for a
        ``proxy_port`` of 0 (a free port picked at start, as tests do).
        """
        if self.proxy_public_url:
            return self.proxy_public_url.rstrip("/")
        port = bound_port if self.proxy_port == 0 and bound_port else self.proxy_port
        return f"{self._scheme_host()}:{port}"

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from (highest first) ``overrides``, ``KUBEGATE_*``, then ``config_file``.

        ``config_file`` defaults to ``$KUBEGATE_CONFIG`` when set.
        """
        path = config_file or (
            Path(os.environ["KUBEGATE_CONFIG"]) if os.environ.get("KUBEGATE_CONFIG") else None
        )
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        cls._config_file = path
        try:
            return cls(**overrides)
        finally:
            cls._config_file = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._config_file))
        return tuple(sources)
