"""`python -m analysis <command> ...`: see analysis/cli.py."""

from __future__ import annotations

from analysis.cli import main

raise SystemExit(main())
