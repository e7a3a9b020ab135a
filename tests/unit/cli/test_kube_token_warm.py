"""The exec plugin's warm path: what it reads, what it answers, and what it never imports."""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from kubegate.cli import kube_token
from kubegate.cli.kube_token_mint import CachedToken, exec_credential, read_cache, write_cache

SERVER = "https://kubegate.example.com:8443"
CLUSTER = "0123456789abcdef0123456789abcdef"
PROXY = f"https://kubegate.example.com:6443/clusters/{CLUSTER}"


def cached(tmp_path: Path, seconds_left: float, lifetime: float = 900) -> tuple[str, CachedToken]:
    now = dt.datetime.now(dt.UTC)
    token = CachedToken(
        token="kg_kube_x",
        expires_at=now + dt.timedelta(seconds=seconds_left),
        minted_at=now + dt.timedelta(seconds=seconds_left - lifetime),
        server=PROXY,
        cluster_id=CLUSTER,
        login=SERVER,
    )
    path = kube_token.cache_file(str(tmp_path), SERVER, CLUSTER)
    write_cache(path, token)
    return path, token


def exec_info(server: str) -> str:
    """``KUBERNETES_EXEC_INFO`` as kubectl writes it (compact JSON, Go's field order)."""
    spec = {"cluster": {"server": server, "certificate-authority-data": "LS0t"}}
    body = {"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1"}
    return json.dumps({**body, "spec": {**spec, "interactive": False}}, separators=(",", ":"))


def test_a_fresh_cached_token_is_answered_as_kubectl_reads_it(tmp_path: Path) -> None:
    path, token = cached(tmp_path, 600)
    answer = kube_token.warm(path, {}, dt.datetime.now(dt.UTC).timestamp())
    assert answer == exec_credential(token) + "\n"
    assert json.loads(answer)["status"]["token"] == "kg_kube_x"
    assert read_cache(path) == token


def test_a_token_inside_its_margin_goes_to_the_cold_path(tmp_path: Path) -> None:
    path, _ = cached(tmp_path, 59)  # a 15-minute token is not reused in its last minute
    assert kube_token.warm(path, {}, dt.datetime.now(dt.UTC).timestamp()) is None
    short, _ = cached(tmp_path / "short", 6, lifetime=20)  # a quarter of a short lifetime
    assert kube_token.warm(short, {}, dt.datetime.now(dt.UTC).timestamp()) is not None
    short, _ = cached(tmp_path / "short", 4, lifetime=20)
    assert kube_token.warm(short, {}, dt.datetime.now(dt.UTC).timestamp()) is None


def test_exec_info_naming_another_server_goes_to_the_cold_path(tmp_path: Path) -> None:
    path, _ = cached(tmp_path, 600)
    now = dt.datetime.now(dt.UTC).timestamp()
    assert kube_token.warm(path, {"KUBERNETES_EXEC_INFO": exec_info(PROXY)}, now) is not None
    attacker = {"KUBERNETES_EXEC_INFO": exec_info("https://attacker.example.com")}
    assert kube_token.warm(path, attacker, now) is None


def test_a_missing_or_damaged_cache_file_goes_to_the_cold_path(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    assert kube_token.warm(str(tmp_path / "none.token"), {}, now) is None
    damaged = tmp_path / "damaged.token"
    for text in ("", "not a cache\n", f"{kube_token.MAGIC}\nsoon later\n"):
        damaged.write_text(text)
        assert kube_token.warm(str(damaged), {}, now) is None
        assert read_cache(str(damaged)) is None


def test_cache_files_differ_for_keys_that_read_the_same(tmp_path: Path) -> None:
    one = kube_token.cache_file(str(tmp_path), "https://a-b.example.com", CLUSTER)
    other = kube_token.cache_file(str(tmp_path), "https://a_b.example.com", CLUSTER)
    assert one != other and Path(one).parent == tmp_path


def test_the_warm_path_imports_nothing_heavy(tmp_path: Path) -> None:
    cached(tmp_path / "kube-tokens", 600)
    probe = (
        "import sys\n"
        "from kubegate.cli import kube_token\n"
        f"code = kube_token.main(['--server', {SERVER!r}, '--cluster', {CLUSTER!r}],\n"
        f"    {{'KUBEGATE_CACHE_DIR': {str(tmp_path)!r}}}, sys.stdout, sys.stderr)\n"
        "print(sorted(sys.modules), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["token"] == "kg_kube_x"
    loaded = set(ast.literal_eval(done.stderr.strip().splitlines()[-1]))
    heavy = {"typer", "rich", "httpx", "pydantic", "json", "datetime", "pathlib", "ssl", "yaml"}
    assert not heavy & loaded, heavy & loaded
