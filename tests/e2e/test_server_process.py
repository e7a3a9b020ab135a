"""`kubegate server` as a user runs it: the embedded default (SQLite, self-signed TLS)."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from testenv.processes import free_port

pytestmark = pytest.mark.e2e

KUBEGATE = Path(sys.executable).parent / "kubegate"


def trust(data_dir: Path) -> ssl.SSLContext:
    """Trust exactly the server's CA from its data dir, as a kubeconfig would."""
    return ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.crt"))


@contextmanager
def running_server(data_dir: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
    env["KUBEGATE_DATA_DIR"] = str(data_dir)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(KUBEGATE), "server", "--port", str(port)], stdout=out, stderr=out, env=env
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                ca = trust(data_dir)
                if httpx.get(f"https://127.0.0.1:{port}/readyz", verify=ca).status_code == 200:
                    break
            except (httpx.TransportError, FileNotFoundError, ssl.SSLError):
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_first_start_serves_https_and_prints_a_one_time_admin_password(tmp_path: Path) -> None:
    data_dir, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    url = f"https://127.0.0.1:{port}"
    with running_server(data_dir, port, log):
        output = log.read_text()
        match = re.search(r"created admin (\S+) with one-time password: (\S+)", output)
        assert match, output
        email, password = match.groups()
        ca = trust(data_dir)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz")  # self-signed: untrusted without the data dir's CA
        login = httpx.post(
            f"{url}/api/v1/auth/login", json={"email": email, "password": password}, verify=ca
        )
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        me = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, verify=ca)
        assert me.json()["user"]["email"] == email
    assert (data_dir / "kubegate.db").exists()
    output = log.read_text()
    json_lines = [line for line in output.splitlines() if line.startswith("{")]
    assert json_lines, output
    records = [json.loads(line) for line in json_lines]
    assert any(r.get("path") == "/api/v1/auth/login" and r["status"] == 200 for r in records)
    for line in json_lines:
        assert password not in line and token not in line


def test_restart_keeps_the_ca_and_the_admin_and_prints_no_password(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    with running_server(data_dir, free_port(), log):
        pass
    first_ca = (data_dir / "tls" / "ca.crt").read_bytes()
    password = re.findall(r"one-time password: (\S+)", log.read_text())
    assert len(password) == 1
    port = free_port()
    with running_server(data_dir, port, tmp_path / "second.log"):
        second = (tmp_path / "second.log").read_text()
        assert "password" not in second
        login = httpx.post(
            f"https://127.0.0.1:{port}/api/v1/auth/login",
            json={"email": "admin@kubegate.local", "password": password[0]},
            verify=trust(data_dir),
        )
        assert login.status_code == 200
    assert (data_dir / "tls" / "ca.crt").read_bytes() == first_ca
    assert oct((data_dir / "tls" / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_invalid_settings_are_refused_with_the_field_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
    env.update(KUBEGATE_DATA_DIR=str(tmp_path), KUBEGATE_PORT="not-a-port")
    result = subprocess.run(
        [str(KUBEGATE), "server"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "invalid settings: port" in result.stderr
