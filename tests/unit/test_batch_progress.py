"""``reranker batch`` progress: a live bar on a terminal, plain lines elsewhere, one rate."""

from __future__ import annotations

import io

from deployments.batch.job import BatchProgress
from deployments.batch.progress import ProgressReporter


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(rows: int, elapsed: float, pairs: int) -> BatchProgress:
    return BatchProgress(shards_done=0, shards_total=2, queries=rows, pairs=pairs,
                         pairs_per_s=pairs / elapsed, failures=0, rejects=1,
                         elapsed_s=elapsed, rows=rows, rows_total=200)


def test_eta_is_the_remaining_rows_at_the_average_rate() -> None:
    p = _progress(50, 10.0, 1000)
    assert p.eta_s == 30.0  # 150 rows left at 5 rows/s
    assert _progress(0, 3.0, 0).eta_s is None


def test_plain_line_when_not_a_terminal() -> None:
    stream = io.StringIO()
    reporter = ProgressReporter(stream)
    assert reporter.live is False
    reporter(_progress(50, 10.0, 1000))
    reporter(_progress(200, 40.0, 4000))
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("[batch] shards 0/2 · queries 50/200 · pairs 1000 · 100.0 pairs/s · "
                        "ETA 30s · failures 0 · rejects 1 · 10s")
    assert lines[1].startswith("[batch] shards 0/2 · queries 200/200 · pairs 4000 · 100.0 pairs")
    assert "\r" not in stream.getvalue()


def test_live_bar_on_a_terminal_with_rate_and_eta() -> None:
    stream = _Terminal()
    reporter = ProgressReporter(stream)
    assert reporter.live is True
    reporter(_progress(50, 10.0, 1000))
    first = stream.getvalue()
    assert "50/200 queries" in first and " 25%|" in first
    assert "100.0 pairs/s" in first and "shards 0/2" in first
    # The bar's clock starts with the pipeline, not with the first report: 10 s elapsed, and
    # 150 rows at 5 rows/s left.
    assert "[00:10<00:30, 100.0 pairs/s, shards 0/2, failures 0]" in first
    reporter(_progress(100, 20.0, 2000))
    reporter.close()
    redrawn = stream.getvalue()[len(first):]
    assert redrawn.startswith("\r") and "100/200 queries" in redrawn
    assert redrawn.endswith("\n")
