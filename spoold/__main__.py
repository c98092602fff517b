"""Allow ``python -m spoold``."""

from spoold.cli import main

raise SystemExit(main())
