"""``python -m reranker.cli``."""

from __future__ import annotations

from reranker.cli.main import main

raise SystemExit(main())
