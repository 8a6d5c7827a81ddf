"""Ray Data batch jobs: rerank first-stage candidates at scale, resumably.

``run_batch_job(BatchJobSpec(...))`` plans deterministic shards (``deployments.batch.plan``),
streams the pending ones through a Ray Data pool of :class:`~deployments.batch.worker.RerankActor`
(one model per actor, loaded once), and commits each shard as soon as all of its queries are
back (``deployments.batch.store``). A rerun of the same job skips committed shards. What is
written: a reranked TREC run, per-pair results (JSONL or Parquet), rejects with line numbers and
a summary. ``docs/batch.md`` describes the layouts, the text join and how memory scales.

Example::

    spec = BatchJobSpec(model="fast", output="out", run="bm25.trec", queries="queries.jsonl",
                        corpus="corpus.jsonl", depth=100)
    summary = run_batch_job(spec, progress=print)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.batch.store import OutputStore
from reranker.config import (
    BackendConfig,
    CustomConfig,
    LocalModelConfig,
    PresetConfig,
    parse_backend_config,
)
from reranker.errors import BackendError
from reranker.hub import fetch_model_files, is_local_model_id
from reranker.presets import get_preset

__all__ = ["BatchJobSpec", "BatchProgress", "BatchSummary", "job_fingerprint",
           "pin_model_revision", "run_batch_job"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class BatchJobSpec(BaseModel):
    """What to rerank, with which model, where to write it and how to run it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: BackendConfig = Field(description="Any backend config or shorthand.")
    output: Path = Field(description="Output folder; rerunning into it resumes the job.")
    candidates: tuple[Path, ...] = Field(default=(), description="Candidate JSONL/Parquet files.")
    run: Path | None = Field(default=None, description="First-stage TREC run (IR layout).")
    queries: Path | None = Field(default=None, description="BEIR queries.jsonl (IR layout).")
    corpus: Path | None = Field(default=None, description="BEIR corpus.jsonl (IR layout).")
    depth: int | None = Field(default=100, ge=1, description="Candidates kept per query (run).")
    top_k: int | None = Field(default=None, ge=1, description="Results written per query.")
    shard_size: int = Field(default=1000, ge=1, description="Queries per output shard.")
    batch_size: int = Field(default=16, ge=1, description="Queries per actor call.")
    concurrency: int = Field(default=1, ge=1, description="Actors (model copies).")
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    tag: str = Field(default="reranker", pattern=r"^\S+$", description="TREC run tag.")
    raw_scores: bool = False
    overwrite: bool = Field(default=False, description="Discard a previous job's output.")
    address: str | None = Field(default=None, description="Ray cluster; default: local Ray.")
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local Ray.")
    progress_interval_s: float = Field(default=5.0, gt=0)
    ray_progress_bars: bool = False

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model(cls, value: Any) -> Any:
        return parse_backend_config(value)

    @model_validator(mode="after")
    def _one_layout(self) -> BatchJobSpec:
        ir = (self.run, self.queries, self.corpus)
        if self.candidates and any(ir):
            raise ValueError("give either candidate files or run/queries/corpus, not both")
        if not self.candidates and not all(ir):
            raise ValueError("give candidate files, or all of run, queries and corpus")
        return self

    @property
    def layout(self) -> str:
        return "candidates" if self.candidates else "ir"


@dataclass(frozen=True)
class BatchProgress:
    """Where a running job is; passed to the ``progress`` callback every few seconds, and once
    more at the end with the figures the summary reports.

    ``rows`` counts the input rows (queries) this run has got back, of ``rows_total`` it has
    to do; ``pairs_per_s`` and ``eta_s`` are averages since the pipeline started (actor start
    included), the same basis as :attr:`BatchSummary.pairs_per_s`.
    """

    shards_done: int
    shards_total: int
    queries: int
    pairs: int
    pairs_per_s: float
    failures: int
    rejects: int
    elapsed_s: float
    rows: int = 0
    rows_total: int = 0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far; ``None`` before the first row is back."""
        if self.rows <= 0 or self.rows_total <= 0:
            return None
        return max(self.rows_total - self.rows, 0) * self.elapsed_s / self.rows

    def __str__(self) -> str:
        eta = "" if self.eta_s is None else f" · ETA {_duration(self.eta_s)}"
        return (f"shards {self.shards_done}/{self.shards_total} · queries "
                f"{self.rows}/{self.rows_total} · pairs {self.pairs} · "
                f"{self.pairs_per_s:.1f} pairs/s{eta} · failures {self.failures} · rejects "
                f"{self.rejects} · {_duration(self.elapsed_s)}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass(frozen=True)
class BatchSummary:
    """The end of a job. Counts are of this run, except ``rejects`` and ``totals`` (all runs).

    ``pairs_per_s`` is this run's pairs over ``pipeline_seconds`` (actor start-up included),
    the rate the last progress report gives; ``seconds`` also counts planning and starting Ray.
    ``startup_s`` is the wait until the first query is being scored (actors starting, models
    loading); ``scoring_seconds`` runs from then until the last query is scored, and
    ``scoring_pairs_per_s`` is the rate over that window.
    ``run_order`` is how the IR layout's run was read: ``"grouped"`` as it is, ``"regrouped"``
    after grouping its lines by query on disk; ``None`` for candidate files.
    """

    queries: int
    pairs: int
    pairs_per_s: float
    failures: int
    rejects: int
    seconds: float
    pipeline_seconds: float
    startup_s: float
    scoring_seconds: float
    scoring_pairs_per_s: float
    shards: int
    shards_resumed: int
    shards_written: int
    attempt: int
    run_order: str | None = None
    totals: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        total = self.totals
        return (f"done: {total.get('queries', 0)} queries, {total.get('pairs', 0)} pairs, "
                f"{total.get('failures', 0)} failures, {self.rejects} rejects; this run: "
                f"{self.pairs} pairs in {self.pipeline_seconds:.1f}s ({self.pairs_per_s:.1f} "
                f"pairs/s; {self.seconds:.1f}s with planning and Ray start), "
                f"shards {self.shards_written} written, {self.shards_resumed} resumed; "
                f"run: {self.files.get('run', '')}")


def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def job_fingerprint(spec: BatchJobSpec) -> dict[str, Any]:
    """What must not change between a job and its resumption (inputs, model, output shape).

    Give it the spec :func:`pin_model_revision` returned, so that the model is keyed on the
    commit its revision resolved to: a branch that moved is another model.
    """
    inputs = spec.candidates if spec.candidates else (spec.run, spec.queries, spec.corpus)
    fingerprint = {
        "version": 1, "layout": spec.layout,
        "inputs": [_stat(Path(p)) for p in inputs if p is not None],
        "model": spec.model.model_dump(mode="json"),
        "depth": spec.depth if spec.layout == "ir" else None, "top_k": spec.top_k,
        "shard_size": spec.shard_size, "raw_scores": spec.raw_scores, "tag": spec.tag,
        "output_format": spec.output_format,
    }
    commit = _preset_commit(spec.model)
    if commit is not None:
        fingerprint["model_commit"] = commit
    return fingerprint


def pin_model_revision(spec: BatchJobSpec) -> BatchJobSpec:
    """``spec`` with a ``custom`` Hub model's revision replaced by the commit it resolves to
    now (one small file fetched), so that every actor of the run, and the resume key, use that
    commit; ``spec`` itself for folders, commits, presets and API models.

    Raises:
        ModelNotFoundError, DownloadError: as :func:`reranker.hub.fetch_model_files`.
    """
    cfg = spec.model
    if not isinstance(cfg, CustomConfig) or is_local_model_id(cfg.model_id) or (
            cfg.revision is not None and _COMMIT.match(cfg.revision)):
        return spec
    folder = fetch_model_files(cfg.model_id, files=[cfg.tokenizer_file], optional_files=(),
                               revision=cfg.revision, cache_dir=cfg.cache_dir)
    pinned = cfg.model_copy(update={"revision": folder.name})  # the snapshot's commit
    return spec.model_copy(update={"model": pinned})


def _preset_commit(cfg: BackendConfig) -> str | None:
    # A preset on a branch ("main") has no revision field to pin its actors to; its resume key
    # still gets the commit the branch resolves to now.
    if not isinstance(cfg, PresetConfig):
        return None
    preset = get_preset(cfg.name)
    if _COMMIT.match(preset.revision):
        return None
    folder = fetch_model_files(preset.repo_id, files=[preset.tokenizer_file], optional_files=(),
                               revision=preset.revision, cache_dir=cfg.cache_dir)
    return folder.name


def _actor_model(spec: BatchJobSpec) -> dict[str, Any]:
    """The model config for actors: local ONNX threads default to the actor's CPUs."""
    cfg = spec.model
    if isinstance(cfg, LocalModelConfig) and cfg.threads is None:
        cfg = cfg.model_copy(update={"threads": max(1, int(spec.num_cpus_per_actor))})
    return cfg.model_dump(mode="json")


class _RayConnection:
    """Starts (or joins) Ray the first time a shard needs it; shuts down only what it started."""

    def __init__(self, spec: BatchJobSpec) -> None:
        self.spec = spec
        self.started = False
        self.rows_to_do = 0  # input rows of the pending shards, for progress reports

    def ensure(self) -> None:
        import ray
        from ray.data import DataContext

        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
            if self.spec.address:
                ray.init(address=self.spec.address, **options)
            else:
                ray.init(address="local", num_cpus=self.spec.num_cpus, **options)
            self.started = True
        # Datasets copy the context when they are created: set it before building one.
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = self.spec.ray_progress_bars
        ctx.print_on_execution_start = self.spec.ray_progress_bars

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


class _Collector:
    """Groups returned rows by shard and commits each shard when it is complete."""

    def __init__(self, store: OutputStore, progress: Callable[[BatchProgress], None] | None,
                 interval: float, total: int, done: int, rejects: int,
                 rows_total: int = 0) -> None:
        self.store, self.progress, self.interval = store, progress, interval
        self.total, self.done, self.rejects = total, done, rejects
        self.rows: dict[int, list[dict[str, Any]]] = {}
        self.entries: dict[int, dict[str, Any]] = {}
        self.queries = self.pairs = self.failures = self.rows_done = 0
        self.rows_total = rows_total
        self.start = self.last = time.perf_counter()
        self.wall_start = time.time()
        self.first_started = float("inf")
        self.last_finished = float("-inf")

    def add(self, row: dict[str, Any]) -> None:
        rows = self.rows.setdefault(row["shard"], [])
        rows.append(row)
        self.rows_done += 1
        self.queries += 1 if row["pairs"] else 0
        self.pairs += row["pairs"]
        self.failures += 1 if row["error"] else 0
        self.rejects += len(row["rejects"])
        if row["started_at"] is not None:
            self.first_started = min(self.first_started, row["started_at"])
            self.last_finished = max(self.last_finished, row["finished_at"])
        if len(rows) == row["shard_rows"]:
            self.commit(row["shard"])

    def commit(self, shard: int) -> None:
        rows = sorted(self.rows.pop(shard, []), key=lambda r: r["seq"])
        self.entries[shard] = self.store.commit_shard(shard, rows)
        self.done += 1

    def tick(self, *, final_at: float | None = None) -> None:
        """Report progress if ``interval`` has passed; ``final_at`` reports the end as of then."""
        now = time.perf_counter() if final_at is None else final_at
        if self.progress and (final_at is not None or now - self.last >= self.interval):
            self.last = now
            elapsed = now - self.start
            self.progress(BatchProgress(self.done, self.total, self.queries, self.pairs,
                                        self.pairs / max(elapsed, 1e-9), self.failures,
                                        self.rejects, elapsed, self.rows_done,
                                        self.rows_total))


def _ir_source(
    spec: BatchJobSpec, done: dict[int, Any], ray_conn: _RayConnection
) -> tuple[Any, list[int], list[Any], Any, str]:
    import ray

    from deployments.batch.plan import plan_ir

    assert spec.run and spec.queries and spec.corpus
    plan = plan_ir(spec.run, spec.queries, spec.corpus, depth=spec.depth,
                   shard_size=spec.shard_size)
    ids: list[int] = []
    refs: list[Any] = []
    for shard, table in plan.shards:
        ids.append(shard)
        if shard not in done:
            ray_conn.ensure()
            refs.append(ray.put(table))
            ray_conn.rows_to_do += table.num_rows
    if not refs:
        return None, ids, plan.rejects, None, plan.run_order
    return (ray.data.from_arrow_refs(refs), ids, plan.rejects, [ray.put(plan.corpus)],
            plan.run_order)


def _candidate_source(
    spec: BatchJobSpec, done: dict[int, Any], ray_conn: _RayConnection
) -> tuple[Any, list[int], list[Any]]:
    from deployments.batch.plan import plan_candidate_shards

    plan = plan_candidate_shards(spec.candidates, spec.shard_size)
    parts = plan.shards
    todo = [{"shard": i, **asdict(p)} for i, p in enumerate(parts) if i not in done]
    if not todo:
        return None, list(range(len(parts))), plan.rejects
    ray_conn.ensure()
    ray_conn.rows_to_do += sum(int(t["rows"]) for t in todo)
    import ray

    from deployments.batch.worker import read_candidate_shard

    # Parsing is light next to scoring: a fraction of a CPU, so it never waits for the actors;
    # a few readers at a time, so that parsed shards do not pile up ahead of them.
    source = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
        read_candidate_shard, batch_size=1, batch_format="numpy", num_cpus=0.1,
        compute=ray.data.TaskPoolStrategy(size=min(len(todo), max(2, spec.concurrency))),
    )
    return source, list(range(len(parts))), plan.rejects


def run_batch_job(
    spec: BatchJobSpec, progress: Callable[[BatchProgress], None] | None = None
) -> BatchSummary:
    """Run (or resume) a batch job; returns its summary once the final files are written.

    Uses the Ray already initialized in this process, else starts a local one (or connects to
    ``spec.address``) and shuts it down at the end. A job whose shards are all written already
    only rewrites the final files, without Ray.

    Raises:
        ConfigError: the output folder holds a different job.
        BackendError: the Ray pipeline failed (committed shards are kept; rerun to resume).
    """
    started_at = time.perf_counter()
    spec = pin_model_revision(spec)
    store = OutputStore(spec.output, spec.output_format, spec.tag)
    done = store.open(job_fingerprint(spec), overwrite=spec.overwrite)
    ray_conn = _RayConnection(spec)
    try:
        corpus = None
        run_order = None
        if spec.layout == "ir":
            source, shard_ids, plan_rejects, corpus, run_order = _ir_source(spec, done, ray_conn)
        else:
            source, shard_ids, plan_rejects = _candidate_source(spec, done, ray_conn)
        n_plan = store.write_plan_rejects(plan_rejects)
        resumed = [s for s in shard_ids if s in done]
        pending = [s for s in shard_ids if s not in done]
        prior_rejects = sum(int(done[s]["rejects"]) for s in resumed)
        collector = _Collector(store, progress, spec.progress_interval_s, len(shard_ids),
                               len(resumed), n_plan + prior_rejects, ray_conn.rows_to_do)
        if source is not None:
            import ray

            from deployments.batch.worker import RerankActor

            # Blocks of one actor call each: an actor task then returns as soon as its batch is
            # scored, so rows reach the driver (and the progress bar) batch by batch rather
            # than once per shard, when a task's whole input block is done.
            source = source.repartition(target_num_rows_per_block=spec.batch_size)
            ds = source.map_batches(
                RerankActor, batch_size=spec.batch_size, batch_format="pyarrow",
                # Each pending shard is one input block: more actors than that would idle.
                compute=ray.data.ActorPoolStrategy(size=min(spec.concurrency, len(pending))),
                num_cpus=spec.num_cpus_per_actor,
                num_gpus=spec.num_gpus_per_actor or None,
                fn_constructor_kwargs={"model": _actor_model(spec), "corpus": corpus,
                                       "top_k": spec.top_k, "raw_scores": spec.raw_scores},
            )
            try:
                for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for row in block.to_pylist():
                        collector.add(row)
                    collector.tick()
            except ray.exceptions.RayError as exc:
                raise BackendError(
                    f"batch job failed after {collector.done} of {len(shard_ids)} shards; "
                    f"committed shards are kept, rerun the same command to resume: {exc}"
                ) from exc
        if collector.rows:
            raise BackendError(f"shards {sorted(collector.rows)} came back incomplete")
        for shard in shard_ids:
            if shard not in done and shard not in collector.entries:
                collector.commit(shard)  # a shard of blank lines: nothing to score
        finished = time.perf_counter()
        pipeline_s = finished - collector.start
        collector.tick(final_at=finished)  # the last report agrees with the summary
        scored = collector.last_finished >= collector.first_started
        window = collector.last_finished - collector.first_started if scored else 0.0
        entries = {**{s: done[s] for s in resumed}, **collector.entries}
        totals = {k: sum(int(e[k]) for e in entries.values())
                  for k in ("queries", "pairs", "failures", "rejects")}
        totals["rejects"] += n_plan
        summary = BatchSummary(
            queries=collector.queries, pairs=collector.pairs,
            pairs_per_s=collector.pairs / max(pipeline_s, 1e-9), failures=collector.failures,
            rejects=collector.rejects, seconds=time.perf_counter() - started_at,
            pipeline_seconds=pipeline_s,
            startup_s=collector.first_started - collector.wall_start if scored else 0.0,
            scoring_seconds=window, scoring_pairs_per_s=collector.pairs / max(window, 1e-9),
            shards=len(shard_ids),
            shards_resumed=len(resumed), shards_written=len(collector.entries),
            attempt=store.attempt, run_order=run_order, totals=totals,
        )
        files = store.finish(shard_ids, asdict(summary))
        return BatchSummary(**{**asdict(summary), "files": files})
    finally:
        ray_conn.close()
