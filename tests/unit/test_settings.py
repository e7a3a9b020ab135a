from __future__ import annotations

from pathlib import Path

import pytest

from kubegate.settings import Settings


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
