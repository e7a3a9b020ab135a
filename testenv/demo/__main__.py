"""``python -m testenv.demo [--workdir DIR]`` (what ``make demo`` runs).

Builds the local test environment if it is not cached yet (the first time takes about 10
minutes on 2 cores), starts a real Kubernetes control plane on 127.0.0.1 with a fake (kwok)
node and a demo pod, kubegate's server and agent, grants a demo user ``edit`` on namespace
demo, and runs that user's kubectl get pods, logs -f and exec through kubegate; then prints
the commands to keep going, and runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from rich.console import Console

from kubegate.errors import KubegateError
from testenv.demo.run import run_demo


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the demo until Ctrl-C or SIGTERM; answers the exit code."""
    parser = argparse.ArgumentParser(
        prog="make demo", description="Run kubegate's demo on this machine, until Ctrl-C."
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the demo's files here instead of a temp dir removed on exit",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_demo(stop, args.workdir, Console(soft_wrap=True))
    except KubegateError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the demo was up: it has stopped what it started
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
