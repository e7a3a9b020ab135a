"""The exec credential plugin's wall time with a warm cache, beside what a command costs at all.

kubectl runs ``kubegate cluster kube-token`` once per invocation, so its warm path (a token
in the cache, still fresh) is start-up cost paid by every kubectl command. Measured side by
side, each a fresh process run ``--runs`` times in turn (so drift weighs on all alike):

- ``true``: the cost of starting any process;
- ``python -c pass``: the interpreter kubegate runs on (this environment's, with ``-I``
  not set, as the console script starts it);
- ``kubectl version --client``: kubectl's own start-up, the bar to meet;
- ``kubegate cluster kube-token``: the console script with a fresh token in its cache;
- ``kubegate version``: any other command, which loads the Typer CLI;
- the plugin 40 at once (what 40 parallel ``kubectl`` calls make it do), wall time of all.

No server is needed: the login and the cached token are written into a temporary config
and cache dir (a mint would go to the network; that is the cold path, once per token
lifetime). ``python -m benchmarks.exec_plugin [--runs N]``; results go to
``docs/benchmarks.json`` (key ``exec_plugin``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results import machine, write_results
from kubegate.cli import config_store, kube_token, kube_token_mint
from kubegate.cli.config_store import Config, Credential, Login, Trust
from testenv.system import kubectl_binaries

REPO = Path(__file__).resolve().parent.parent
SERVER = "https://kubegate.invalid:8443"
CLUSTER = "0123456789abcdef0123456789abcdef"
PARALLEL = 40


def prepare(home: Path) -> dict[str, str]:
    """A login and a fresh cached token in ``home``; the environment that finds them."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    now = dt.datetime.now(dt.UTC)
    login = Login(
        SERVER, Trust(), Credential("password", "kg_api_bench", now + dt.timedelta(hours=1))
    )
    with config_store.updating(config_store.config_path(env)) as box:
        box[0] = Config().with_login(login, make_current=True)
    token = kube_token_mint.CachedToken(
        token="kg_kube_bench",
        expires_at=now + dt.timedelta(hours=1),
        minted_at=now,
        server=f"https://kubegate.invalid:6443/clusters/{CLUSTER}",
        cluster_id=CLUSTER,
        login=SERVER,
    )
    path = kube_token.cache_file(kube_token.cache_dir(env), SERVER, CLUSTER)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kube_token_mint.write_cache(path, token)
    return env


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def parallel(argv: list[str], env: dict[str, str], count: int) -> float:
    started = time.perf_counter()
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"{argv[0]} failed")
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of each command")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.json")
    args = parser.parse_args()
    kubegate = Path(sys.executable).parent / "kubegate"
    kubectl = kubectl_binaries()["1.32"]
    with tempfile.TemporaryDirectory(prefix="kubegate-bench-plugin-") as home:
        env = prepare(Path(home))
        plugin = [str(kubegate), "cluster", "kube-token", "--server", SERVER, "--cluster", CLUSTER]
        out = subprocess.run(plugin, env=env, capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["status"]["token"] == "kg_kube_bench", out.stderr
        commands = {
            "true": [shutil.which("true") or "/bin/true"],
            "python -c pass": [sys.executable, "-c", "pass"],
            "kubectl version --client": [str(kubectl), "version", "--client"],
            "kubegate cluster kube-token (warm)": plugin,
            "kubegate version (the Typer CLI)": [str(kubegate), "version"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
        together = [parallel(plugin, env, PARALLEL) for _ in range(5)]
    results: dict[str, Any] = {
        "machine": dataclasses.asdict(machine()),
        "runs": args.runs,
        "commands": {name: summary(values) for name, values in samples.items()},
        "parallel": {
            "count": PARALLEL,
            "wall_ms_median_of_5": round(statistics.median(together) * 1000, 1),
        },
    }
    for name, row in results["commands"].items():
        print(f"{name:<38} median {row['median_ms']:7.2f} ms   p90 {row['p90_ms']:7.2f} ms")
    print(f"plugin x{PARALLEL} at once: {results['parallel']['wall_ms_median_of_5']} ms (wall)")
    write_results(args.out, "exec_plugin", results)


if __name__ == "__main__":
    main()
