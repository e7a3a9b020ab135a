from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubegate.settings import OidcSettings, Settings


def test_config_file_values_are_overridden_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kubegate.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\ngateway_enabled = false\n')
    monkeypatch.setenv("KUBEGATE_PORT", "9100")
    settings = Settings.load(config)
    assert (settings.host, settings.port, settings.gateway_enabled) == ("0.0.0.0", 9100, False)


def test_explicit_overrides_win_over_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEGATE_PORT", "9100")
    assert Settings.load(port=9200).port == 9200


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_unknown_setting_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "kubegate.toml"
    config.write_text("prot = 9000\n")
    with pytest.raises(ValueError, match="prot"):
        Settings.load(config)


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg-data")
    monkeypatch.delenv("KUBEGATE_DATA_DIR", raising=False)
    assert Settings.load().data_dir == Path("/xdg-data/kubegate")


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"| `{name}` | `KUBEGATE_{name.upper()}` |" in doc, name
    for key in OidcSettings.model_fields:
        assert f"| `{key}` | " in doc, f"oidc.{key}"


def test_proxy_url_defaults_to_the_first_tls_host_on_the_proxy_port() -> None:
    settings = Settings.load(tls_hosts=["gw.example.com", "10.0.0.5"], proxy_port=7443)
    assert settings.proxy_url() == "https://gw.example.com:7443"


def test_proxy_url_is_plain_http_when_tls_is_off() -> None:
    assert Settings.load(tls=False).proxy_url() == "http://127.0.0.1:6443"


@pytest.mark.parametrize("host", ["::1", "[::1]"], ids=["bare", "bracketed"])
def test_proxy_url_puts_an_ipv6_address_in_brackets(host: str) -> None:
    assert Settings.load(tls_hosts=[host, "localhost"]).proxy_url() == "https://[::1]:6443"


def test_proxy_public_url_wins_without_its_trailing_slash() -> None:
    settings = Settings.load(proxy_public_url="https://kube.example.com/gw/", proxy_port=1)
    assert settings.proxy_url() == "https://kube.example.com/gw"


def test_proxy_public_url_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="proxy_public_url"):
        Settings.load(proxy_public_url="kube.example.com:6443")


@pytest.mark.parametrize(
    "override",
    [
        {"kube_token_ttl_seconds": 0},
        {"kube_token_ttl_seconds": 86401},
        {"kube_token_mints_per_minute": 0},
        {"proxy_port": 65536},
        {"proxy_requests_per_second": 0},
        {"proxy_request_burst": 0},
        {"proxy_max_watches": 0},
        {"proxy_max_streams": 0},
    ],
    ids=lambda o: next(iter(o)),
)
def test_out_of_range_gateway_limits_are_refused_naming_the_setting(
    override: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match=next(iter(override))):
        Settings.load(None, **override)


def test_gateway_defaults() -> None:
    settings = Settings.load()
    assert (settings.kube_token_ttl_seconds, settings.kube_token_mints_per_minute) == (900, 60)
    assert (settings.proxy_port, settings.proxy_public_url) == (6443, None)
    assert (settings.proxy_requests_per_second, settings.proxy_request_burst) == (50.0, 100)
    assert (settings.proxy_max_watches, settings.proxy_max_streams) == (100, 20)


def test_proxy_url_names_the_bound_port_when_proxy_port_is_0() -> None:
    assert Settings.load(proxy_port=0).proxy_url(bound_port=40123) == "https://127.0.0.1:40123"
    # A fixed port is what clients reach (behind NAT the bound one may differ).
    assert Settings.load(proxy_port=6443).proxy_url(bound_port=40123) == "https://127.0.0.1:6443"
