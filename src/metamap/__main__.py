"""``python -m metamap`` runs the command line."""

from metamap.cli import main

raise SystemExit(main())
