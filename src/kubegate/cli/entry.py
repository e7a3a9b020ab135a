"""The ``kubegate`` command's entry point: the exec credential plugin before anything else.

kubectl runs ``kubegate cluster kube-token ...`` for every command it sends through a
kubegate context, so that one command is dispatched here, before Typer, Rich or the rest of
the CLI is imported (``kube_token.py`` says what its warm path costs); everything else goes
to the Typer app.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point (``kubegate``, ``python -m kubegate``)."""
    if sys.argv[1:3] == ["cluster", "kube-token"] and not {"--help", "-h"} & set(sys.argv):
        from kubegate.cli.kube_token import run

        run()
        return
    from kubegate.cli.app import main as typer_main

    typer_main()
