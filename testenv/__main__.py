"""``python -m testenv`` (``make testenv``): build (or check) the cached test environment."""

from testenv.build import main

raise SystemExit(main())
