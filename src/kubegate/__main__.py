"""``python -m kubegate``: the same as the ``kubegate`` command."""

from kubegate.cli.app import main

main()
