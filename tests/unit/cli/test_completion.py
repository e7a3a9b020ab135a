"""Shell completion: the console script completes its own commands (Typer's completion)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KUBEGATE = Path(sys.executable).parent / "kubegate"


def complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_KUBEGATE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    done = subprocess.run(
        [str(KUBEGATE)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_command_groups_and_their_commands() -> None:
    assert "cluster" in complete("kubegate clu")
    assert set(complete("kubegate cluster kubeconfig ")) >= {"add", "remove", "list"}
    assert "--embed-token" in complete("kubegate cluster kubeconfig add --emb")
