"""Resident memory of ``ScoreCache`` per million entries (the figure its docstring states).

    python benchmarks/score_cache_memory.py --entries 1000000
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    """This process's resident set size now (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from reranker.backends.local import ScoreCache

    cache = ScoreCache(args.entries)
    gc.collect()
    before = rss_mb()
    step = 10_000
    for start in range(0, args.entries, step):
        keys = [ScoreCache.key("a query", f"document {i}") for i in range(start, start + step)]
        cache.put_many(keys, [i * 0.5 for i in range(start, start + step)])
    gc.collect()
    grown = rss_mb() - before
    per_million = grown * 1_000_000 / args.entries
    from benchmarks._common import cpu_line

    print(cpu_line())
    print(f"python {platform.python_version()}: {cache.stats.size} entries, RSS grew "
          f"{grown:.0f} MB = {per_million:.0f} MB per million entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
