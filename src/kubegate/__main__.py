"""``python -m kubegate``: the same as the ``kubegate`` command."""

from kubegate.cli.entry import main

main()
