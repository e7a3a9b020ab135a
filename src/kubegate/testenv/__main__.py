"""``python -m kubegate.testenv``: build (or check) the cached test environment."""

from kubegate.testenv.build import main

raise SystemExit(main())
