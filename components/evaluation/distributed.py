"""Draw the evaluation samples in seeded chunks, in this process or on ``evaluate.num_workers`` Ray actors.

The N samples are cut into chunks of ``chunk_size`` (the evaluate stage passes ``evaluate.batch_size``), and
chunk i is drawn from its own ``torch.Generator`` seeded with ``chunk_seed(seed, i)`` (numpy's
``SeedSequence(seed, spawn_key=(i,))``, the i-th child of ``seed``; the global torch RNG is seeded the same way
for models that read it). The chunks depend on N, the chunk size and the seed only, never on how many workers
draw them, so ``num_workers`` 0, 1 and 2 draw bit-identical samples on the same kind of device and everything
computed from them agrees.

Each chunk is sampled and then passed through the feature extractors (the domain classifier, the SimCLR
encoder): its features, its :class:`~components.evaluation.frechet.FrechetMoments` (float64 sums) and the
classifier's label of every sample come back with the samples. The driver reassembles the chunks in index
order and merges the moments in that order, so the merged moments, and the FID from them, do not depend on the
number of workers either.

``num_workers = 0`` runs the chunks one after the other in this process (no Ray). Otherwise the model and the
extractors are put in Ray's object store once (``ray.put``: no path on the driver's disk is read by a worker),
``num_workers`` actors each take a copy, and chunks go to whichever actor is free (``ray.util.ActorPool``). An
actor asks Ray for one GPU where the cluster has GPUs (one actor per GPU), else for one CPU (torch then runs one
thread in it). A chunk is a pure function of its index, so a chunk whose actor died is simply redrawn by the
restarted actor. Ray must be initialised by the caller (the evaluate stage: ``components.training.driver.
init_ray``, a local instance or the cluster in ``RAY_ADDRESS``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from components.errors import GenfoundryError
from components.evaluation.features import TrainedExtractor
from components.evaluation.frechet import FrechetMoments

#: how long the actors of a cluster joined through RAY_ADDRESS (it may autoscale) get to start
READY_TIMEOUT_S = 300.0
SEED_RULE = "chunk i (chunk_size samples): torch.Generator and global torch seed = SeedSequence(seed, spawn_key=(i,))"


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    size: int
    seed: int


def chunk_seed(seed: int, index: int) -> int:
    """The 64-bit torch seed of chunk ``index``: the ``index``-th child of ``SeedSequence(seed)``."""
    ss = np.random.SeedSequence(seed % (1 << 64), spawn_key=(index,))  # SeedSequence takes non-negative entropy
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def plan_chunks(n: int, chunk_size: int, seed: int) -> list[Chunk]:
    """``ceil(n / chunk_size)`` chunks covering ``0..n``, the last one shorter; independent of any worker count."""
    if n < 1 or chunk_size < 1:
        raise ValueError(f"plan_chunks: expected n >= 1 and chunk_size >= 1, got n={n}, chunk_size={chunk_size}")
    starts = range(0, n, chunk_size)
    return [Chunk(i, start, min(chunk_size, n - start), chunk_seed(seed, i)) for i, start in enumerate(starts)]


@dataclass
class Work:
    """What every worker needs: the model, its sampler options, the extractors (name -> extractor) and the name
    of the extractor whose ``predict`` labels each sample (a ``TrainedClassifier``), if any."""

    model: Any  # GenerativeModel
    options: dict[str, Any]
    extractors: dict[str, TrainedExtractor] = field(default_factory=dict)
    labeller: str | None = None

    def to(self, device: torch.device) -> Work:
        self.model.to(device).eval()
        for ext in self.extractors.values():
            ext.model.to(device).eval()
        return self


@dataclass
class ChunkResult:
    index: int
    samples: Any  # Tensor (on the CPU) or a list of strings
    features: dict[str, Tensor]
    moments: dict[str, dict[str, Tensor]]  # FrechetMoments states
    labels: Tensor | None
    sampler_info: dict[str, Any]
    sampling_seconds: float
    extraction_seconds: float


@dataclass
class Drawn:
    """The N samples in chunk order, each extractor's features and merged moments, the labels, and how they
    were drawn (``info``, for the protocol card; ``samples_per_s``)."""

    samples: Any
    features: dict[str, Tensor]
    moments: dict[str, FrechetMoments]
    labels: Tensor | None
    sampler_info: dict[str, Any]
    info: dict[str, Any]

    @property
    def samples_per_s(self) -> float:
        seconds = self.info["wall_seconds"]
        return self.info["n"] / seconds if seconds > 0 else math.inf


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """A generator on ``device`` seeded with ``seed``; the global torch RNG seeded too, and restored after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def run_chunk(work: Work, chunk: Chunk) -> ChunkResult:
    """Sample one chunk and extract its features: the same function in this process and in every actor."""
    device = _device_of(work.model)
    t0 = time.perf_counter()
    with _seeded(chunk.seed, device) as gen:
        samples = work.model.sample(chunk.size, generator=gen, **work.options)
    if isinstance(samples, Tensor):
        samples = samples.float().cpu()  # ends on the CPU: synchronised
    t1 = time.perf_counter()
    features, moments = {}, {}
    for name, ext in work.extractors.items():
        f = ext.features(samples.to(_device_of(ext.model))).cpu()  # (size, D), on the extractor's device
        features[name] = f
        m = FrechetMoments(f.shape[1])
        m.update(f)
        moments[name] = {k: v.clone() for k, v in m.metric_state.items()}
    labels = None
    if work.labeller is not None:
        labeller = work.extractors[work.labeller]
        labels = labeller.predict(samples.to(_device_of(labeller.model))).cpu()  # type: ignore[attr-defined]
    return ChunkResult(
        index=chunk.index,
        samples=samples,
        features=features,
        moments=moments,
        labels=labels,
        sampler_info=work.model.sampler_info(),
        sampling_seconds=t1 - t0,
        extraction_seconds=time.perf_counter() - t1,
    )


class ChunkWorker:
    """A Ray actor (``ray.remote(ChunkWorker)``): one copy of the work, on this actor's GPU if it has one.

    The work comes as ``[ObjectRef]`` with every call and is fetched once (a nested reference is not resolved by
    Ray): a restarted actor fetches it again, and no reference sits among the constructor's arguments, which Ray
    cannot promise to a restartable actor (ray-project/ray#53727). The driver holds the reference until every
    chunk is back."""

    def __init__(self) -> None:
        import ray

        self.device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
        self.work: Work | None = None

    def _work(self, ref: list[Any]) -> Work:
        if self.work is None:
            import ray

            self.work = ray.get(ref[0]).to(self.device)
        return self.work

    def ready(self, ref: list[Any]) -> str:
        """Fetch the work; what this actor runs on."""
        self._work(ref)
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({torch.get_num_threads()} threads)"

    def run(self, ref: list[Any], chunk: Chunk) -> ChunkResult:
        return run_chunk(self._work(ref), chunk)


def draw(
    model: Any,
    n: int,
    *,
    chunk_size: int,
    seed: int,
    options: dict[str, Any] | None = None,
    extractors: dict[str, TrainedExtractor] | None = None,
    labeller: str | None = None,
    num_workers: int = 0,
) -> Drawn:
    """``n`` samples of ``model`` in seeded chunks (module docstring), with the extractors' features, merged
    moments and the labeller's labels; in this process (``num_workers = 0``) or on that many Ray actors."""
    extractors = {k: v for k, v in (extractors or {}).items() if v is not None}
    if labeller is not None and labeller not in extractors:
        raise ValueError(f"draw: expected the labeller among the extractors {sorted(extractors)}, got {labeller!r}")
    if num_workers < 0:
        raise ValueError(f"draw: expected num_workers >= 0, got {num_workers}")
    work = Work(model=model, options=dict(options or {}), extractors=extractors, labeller=labeller)
    chunks = plan_chunks(n, chunk_size, seed)
    model.eval()
    t0 = time.perf_counter()
    if num_workers == 0:
        results = [run_chunk(work, c) for c in chunks]
        startup = 0.0
        device = _device_of(model)
        where = f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else str(device)
    else:
        results, startup, where = _draw_on_ray(work, chunks, num_workers)
    wall = time.perf_counter() - t0
    drawn = _assemble(results, extractors, labeller)
    drawn.info = {
        "n": n,
        "num_workers": num_workers,
        "chunk_size": chunk_size,
        "chunks": len(chunks),
        "seeds": SEED_RULE,
        "device": where,
        "wall_seconds": round(wall, 3),
        "startup_seconds": round(startup, 3),  # Ray actors started and holding the model (0 in-process)
        "sampling_seconds": round(sum(r.sampling_seconds for r in results), 3),  # summed over the chunks
        "extraction_seconds": round(sum(r.extraction_seconds for r in results), 3),
    }
    return drawn


def _assemble(results: Sequence[ChunkResult], extractors: dict[str, Any], labeller: str | None) -> Drawn:
    results = sorted(results, key=lambda r: r.index)
    first = results[0].samples
    samples: Any = (
        torch.cat([r.samples for r in results])
        if isinstance(first, Tensor)
        else [s for r in results for s in r.samples]
    )
    features = {name: torch.cat([r.features[name] for r in results]) for name in extractors}
    moments = {}
    for name in extractors:
        m = FrechetMoments(features[name].shape[1])
        for r in results:  # in chunk order: the float64 sums do not depend on who drew which chunk
            m.merge_state(r.moments[name])
        moments[name] = m
    labels = torch.cat([r.labels for r in results]) if labeller is not None else None  # type: ignore[misc]
    return Drawn(samples, features, moments, labels, sampler_info=results[-1].sampler_info, info={})


def actor_resources(num_workers: int, cluster: dict[str, float]) -> dict[str, float]:
    """What each actor asks Ray for: a GPU each where the cluster has GPUs, else a CPU each; one line naming what
    was asked and what the cluster has when it cannot hold ``num_workers`` of them."""
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    if gpus > 0:
        need, have, kind = {"num_cpus": 1, "num_gpus": 1}, gpus, "GPU"
    else:
        need, have, kind = {"num_cpus": 1}, cpus, "CPU"
    if have < num_workers:
        raise GenfoundryError(
            f"evaluate: expected a Ray cluster with {num_workers} {kind}s for evaluate.num_workers = {num_workers} "
            f"(one {kind} per worker), got {have:g} {kind}s; lower evaluate.num_workers or add nodes"
        )
    return need


def _draw_on_ray(work: Work, chunks: list[Chunk], num_workers: int) -> tuple[list[ChunkResult], float, str]:
    import ray
    from ray.util import ActorPool

    if not ray.is_initialized():
        raise GenfoundryError(
            f"evaluate: evaluate.num_workers = {num_workers} needs Ray; expected ray.init() (or the evaluate "
            "stage's init_ray) first, got no Ray"
        )
    t0 = time.perf_counter()
    local = not os.environ.get("RAY_ADDRESS")
    try:
        need = actor_resources(num_workers, ray.cluster_resources())
    except GenfoundryError:
        if local:  # a local instance never grows; a cluster may autoscale: its actors get READY_TIMEOUT_S
            raise
        need = {"num_cpus": 1}
    remote = ray.remote(ChunkWorker).options(**need, max_restarts=2, max_task_retries=2)
    ref = ray.put(work)  # once: every actor reads the same object
    actors = [remote.remote() for _ in range(num_workers)]
    try:
        ready = [a.ready.remote([ref]) for a in actors]
        done, _ = ray.wait(ready, num_returns=len(ready), timeout=READY_TIMEOUT_S)
        if len(done) < len(ready):
            raise GenfoundryError(
                f"evaluate: expected {num_workers} evaluation workers ({need}) to start, got {len(done)} after "
                f"{READY_TIMEOUT_S:g} s; lower evaluate.num_workers or add nodes"
            )
        names = ray.get(ready)
        startup = time.perf_counter() - t0
        pool = ActorPool(actors)
        results = list(pool.map_unordered(lambda a, c: a.run.remote([ref], c), chunks))
    finally:
        for a in actors:
            ray.kill(a)
    kinds = sorted(set(names))
    return results, startup, f"ray: {num_workers} workers, {', '.join(kinds)} each"
