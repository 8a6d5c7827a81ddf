"""How ``reranker batch`` shows a running job: a live bar on a terminal, plain lines otherwise.

The job calls the reporter with a :class:`~deployments.batch.job.BatchProgress` every few
seconds and once at the end. On a terminal that drives a ``tqdm`` bar (queries done of the
run's total, pairs/s, elapsed and ETA); when stderr is a file or a pipe (CI logs, ``nohup``)
each report is one ``[batch] ...`` line, which does not fill a log with carriage returns. Both
give rates averaged since the pipeline started, the basis of the summary's ``pairs_per_s``, so
the last report and the summary agree.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any

__all__ = ["ProgressReporter"]

_BAR_FORMAT = ("[batch] {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} queries "
               "[{elapsed}<{remaining}{postfix}]")


class ProgressReporter:
    """A ``progress`` callback for ``run_batch_job`` that writes to ``stream``.

    Args:
        stream: where to write (stderr).
        live: draw a bar (default: when ``stream`` is a terminal).
    """

    def __init__(self, stream: IO[str], *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self._bar: Any = None

    def __call__(self, progress: Any) -> None:
        if not self.live:
            print(f"[batch] {progress}", file=self.stream, flush=True)
            return
        if self._bar is None:
            from tqdm import tqdm

            # smoothing=0: tqdm's rate and ETA are averages since start, as the job's are, and
            # the start is the pipeline's, not this first report's.
            self._bar = tqdm(total=progress.rows_total or None, unit="query", file=self.stream,
                             smoothing=0, bar_format=_BAR_FORMAT, mininterval=0,
                             **self._width())
            self._bar.start_t = time.time() - progress.elapsed_s
        self._bar.n = progress.rows
        self._bar.set_postfix_str(
            f"{progress.pairs_per_s:.1f} pairs/s, shards {progress.shards_done}/"
            f"{progress.shards_total}, failures {progress.failures}", refresh=False)
        self._bar.refresh()

    def _width(self) -> dict[str, Any]:
        # A terminal that reports no size (a pty nobody sized: `script`, some CI runners) made
        # tqdm draw nothing at all (its bar fell outside 0 rows): give it a fixed size there.
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        if size.columns > 0 and size.lines > 0:
            return {"dynamic_ncols": True}
        return {"ncols": 100, "nrows": 24}

    def close(self) -> None:
        """End the bar's line so that what follows starts on a new one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
