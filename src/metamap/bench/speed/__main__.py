"""``python -m metamap.bench.speed [--quick] --json PATH``."""

from metamap.bench.speed.benchmark import main

raise SystemExit(main())
