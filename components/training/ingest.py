"""Where a training rank's batches come from: the prepared arrays in-process, Ray Data shards on Ray workers.

Two sources with one interface (:class:`DataSource` -> :class:`Batches`), so the session cannot tell them apart:

- :class:`LocalData` (``train.num_workers: 0``, and driver-side tools): the split's ``.npz`` through a
  ``DataLoader`` with a ``DistributedSampler`` (a per-epoch permutation seeded by ``train.seed``).
- :class:`ShardPlan` (every Ray Train worker): the split's Parquet shards (:mod:`components.data.shards`) as a
  Ray Dataset built on the driver by :func:`ray_datasets`, read by tasks pinned to the driver's node (the only node
  that has ``data/``) and streamed to the workers through Ray's object store; each worker iterates its
  ``ray.train.get_dataset_shard`` with a seeded local shuffle buffer. No worker opens a path of the driver's.

Semantics kept from the sampler: every rank gets ``rows // world`` rows per epoch (Ray's ``equal=True`` split, the
sampler's ``drop_last``), in batches of ``min(batch_size, rows // world)`` with the last partial batch dropped, and
the order changes every epoch. A split up to ``train.materialize_mib`` is read once into the object store (the
reads then cost nothing per epoch); a larger one streams from its shards every epoch, in a new file order, with
at most ``train.shuffle_buffer`` rows buffered per worker: a worker never holds the split. The reads take no CPU
(the training workers hold them), at most :func:`read_tasks` run at once and at most
``train.ingest_object_store_mib`` of their blocks wait in the object store, so a split of any size costs the node
the same few read processes and the same window of the store (a worker maps the pages of the blocks it reads: they
count in its RSS, not its private memory, and stop growing at that window). ``train.max_worker_mib``
makes that a checked cap: every batch, the worker measures its private memory and fails above it
(:mod:`components.training.memory`). A streamed dataset (``prepare_streamed``: shards only, no arrays) trains on
Ray workers only; the in-process path refuses it with one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from components.config import TrainConfig
from components.data import load_attributes, load_manifest, load_spec, load_split
from components.data.shards import ATTR, X, Y, shard_paths, training_columns
from components.data.spec import DataSpec
from components.errors import DataError
from components.models.base import GenerativeModel
from components.training.memory import MemoryGuard


def data_tensors(spec: DataSpec, x: np.ndarray, y: np.ndarray, *attributes: np.ndarray) -> tuple[Tensor, ...]:
    """Arrays of a prepared split as training tensors (text is tokenised; the same columns its Parquet shards
    hold); ``attributes`` (int ids, (N,) each) follow ``y`` in the batch, for a model whose ``batch_attributes``
    name them."""
    cols = training_columns(spec, x, y, {str(i): a for i, a in enumerate(attributes)})
    return tuple(torch.from_numpy(c) for c in cols.values())


def split_tensors(
    model: GenerativeModel, spec: DataSpec, root: str | Path, dataset: str, split: str
) -> tuple[Tensor, ...]:
    """One prepared split as the batches ``model`` reads: (x, y, *its ``batch_attributes``)."""
    attrs = load_attributes(root, dataset, split) if model.batch_attributes else {}
    missing_attributes(model, set(attrs), dataset, split)
    return data_tensors(spec, *load_split(root, dataset, split), *(attrs[a] for a in model.batch_attributes))


class Batches(Protocol):
    """One rank's batches of one split: ``(x, y, *model.batch_attributes)`` tensors."""

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""

    def set_epoch(self, epoch: int) -> None:
        """Reseed the order for ``epoch`` (call before iterating)."""

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]: ...


class DataSource(Protocol):
    spec: DataSpec

    def batches(self, model: GenerativeModel, split: str, *, train: bool, rank: int, world: int) -> Batches:
        """``split`` for ``model`` on ``rank`` of ``world``: shuffled with whole batches when ``train``, else in
        order with the last batch partial (held-out metrics)."""


def train_batch_size(cfg: TrainConfig, per_rank: int) -> int:
    return min(cfg.batch_size, max(1, per_rank))


def missing_attributes(model: GenerativeModel, have: set[str], dataset: str, split: str) -> None:
    missing = [a for a in model.batch_attributes if a not in have]
    if missing:
        raise DataError(
            f"{model.family}: expected the attributes {missing} in {dataset!r}/{split}, got {sorted(have) or 'none'}; "
            "re-run `dvc repro prepare` or drop them from model.condition_on"
        )


# --- in-process: the prepared arrays ------------------------------------------------------------------------------


class TensorBatches:
    """A ``DataLoader`` over tensors, with the sampler's per-epoch reseeding."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        return iter(self.loader)


def tensor_batches(data: tuple[Tensor, ...], cfg: TrainConfig, *, train: bool, rank: int, world: int) -> TensorBatches:
    ds = TensorDataset(*data)
    if not train:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
        return TensorBatches(DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler))
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    return TensorBatches(
        DataLoader(ds, batch_size=train_batch_size(cfg, len(sampler)), sampler=sampler, drop_last=True)
    )


@dataclass
class LocalData:
    """A prepared dataset on this machine's filesystem."""

    root: str
    dataset: str
    cfg: TrainConfig

    def __post_init__(self) -> None:
        self.spec = load_spec(self.root, self.dataset)

    def batches(self, model: GenerativeModel, split: str, *, train: bool, rank: int, world: int) -> TensorBatches:
        data = split_tensors(model, self.spec, self.root, self.dataset, split)
        return tensor_batches(data, self.cfg, train=train, rank=rank, world=world)


# --- Ray workers: Ray Data shards ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardPlan:
    """What a Ray worker knows of the data (filled on the driver: workers never read the manifest)."""

    dataset: str
    spec: DataSpec
    rows: dict[str, int]  # split -> rows
    columns: tuple[str, ...]  # the shards' columns: x, y, attr_<name>...
    cfg: TrainConfig

    def batches(self, model: GenerativeModel, split: str, *, train: bool, rank: int, world: int) -> ShardBatches:
        import ray.train

        missing_attributes(model, {c[len(ATTR) :] for c in self.columns if c.startswith(ATTR)}, self.dataset, split)
        per_rank = self.rows[split] // world  # Ray's equal split
        if per_rank < 1:
            raise DataError(
                f"{self.dataset!r}/{split}: expected at least one row per worker, got {self.rows[split]} rows for "
                f"{world} workers; lower train.num_workers"
            )
        return ShardBatches(
            ray.train.get_dataset_shard(split),
            columns=(X, Y, *(ATTR + a for a in model.batch_attributes)),
            rows=per_rank,
            batch_size=train_batch_size(self.cfg, per_rank) if train else self.cfg.batch_size,
            train=train,
            shuffle_buffer=self.cfg.shuffle_buffer,
            seed=self.cfg.seed,
            rank=rank,
            max_worker_mib=self.cfg.max_worker_mib,
        )


class ShardBatches:
    """One worker's ``get_dataset_shard`` as batches: each iteration is one epoch of Ray's split (every worker
    must iterate it, as they all do every epoch); training batches go through a local shuffle buffer seeded by
    (seed, epoch, rank). Every batch, the worker's memory is checked against ``max_worker_mib``
    (:class:`~components.training.memory.MemoryGuard`; None: measured only, :attr:`guard` ``.peak_mib``)."""

    def __init__(self, shard: Any, *, columns: tuple[str, ...], rows: int, batch_size: int, train: bool,
                 shuffle_buffer: int, seed: int, rank: int, max_worker_mib: float | None = None) -> None:  # fmt: skip
        self.shard, self.columns, self.rows, self.batch_size = shard, columns, rows, batch_size
        self.train, self.shuffle_buffer, self.seed, self.rank = train, shuffle_buffer, seed, rank
        self.epoch = 0
        self.guard = MemoryGuard(max_worker_mib, where=f"rank {rank}")

    def __len__(self) -> int:
        return self.rows // self.batch_size if self.train else math.ceil(self.rows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        shuffle: dict[str, Any] = {}
        if self.train:
            state = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1)[0]
            shuffle = {"local_shuffle_buffer_size": self.shuffle_buffer, "local_shuffle_seed": int(state)}
        batches = self.shard.iter_torch_batches(batch_size=self.batch_size, drop_last=self.train, **shuffle)
        split = "training" if self.train else "held-out"
        for i, b in enumerate(batches):  # dict of column -> tensor
            out = tuple(torch.as_tensor(b[c]) for c in self.columns)
            del b
            self.guard.check(context=f"epoch {self.epoch}, {split} batch {i}")
            yield out


def shard_plan(root: str | Path, dataset: str, cfg: TrainConfig, *, splits: tuple[str, ...]) -> ShardPlan:
    """The driver's view of the shards a Ray run reads (checks they exist: a dataset prepared before shards fails
    with one line)."""
    manifest = load_manifest(root, dataset)
    rows = {}
    for s in splits:
        shard_paths(root, dataset, s, manifest)  # raises for a pre-shard dataset
        rows[s] = int(sum(manifest["shards"][s]["rows"]))
    spec = load_spec(root, dataset)
    columns = (X, Y, *(ATTR + a for a in spec.attributes))
    return ShardPlan(dataset=dataset, spec=spec, rows=rows, columns=columns, cfg=cfg)


def read_tasks(cfg: TrainConfig) -> int:
    """Parquet read tasks in flight at once: one per training worker, at least 2 (so one reads while one's output
    is consumed)."""
    return max(2, cfg.num_workers)


_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8}  # bytes per value of a Parquet type


def in_memory_mib(paths: list[str]) -> float:
    """What Parquet files hold once read (MiB): values x their width, from the footers. Not the files' size: the
    shards are dictionary-encoded and compressed (256-level images take a fifth of their float32 bytes on disk),
    and the object store holds the decoded columns."""
    import pyarrow.parquet as pq

    total = 0
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            for j in range(group.num_columns):
                col = group.column(j)
                total += col.num_values * _WIDTH.get(col.physical_type, 8)
    return total / 2**20


def ray_datasets(root: str | Path, dataset: str, cfg: TrainConfig, *, splits: tuple[str, ...]) -> dict[str, Any]:
    """split -> Ray Dataset of its shards, read on this (the driver's) node; materialized in the object store
    when the split's shards hold at most ``train.materialize_mib`` once read (:func:`in_memory_mib`), else streamed
    every epoch."""
    import ray
    import ray.data

    manifest = load_manifest(root, dataset)
    here = ray.get_runtime_context().get_node_id()
    ctx = ray.data.DataContext.get_current()
    v2 = ctx.use_datasource_v2
    # Ray 2.60's V2 Parquet reader lists the files and reads their footers in actors it places anywhere (on
    # another node they fail: the files are on this node only, tests/cluster/test_train_two_nodes.py), and in a
    # task of 1 CPU at the start of every execution (with every CPU held by the training workers a streamed split
    # never starts). The V1 reader lists them here, on the driver, and its reads take the ray_remote_args below.
    ctx.use_datasource_v2 = False
    try:
        return _read_splits(root, dataset, cfg, splits, manifest, here)
    finally:
        ctx.use_datasource_v2 = v2


def _read_splits(
    root: str | Path, dataset: str, cfg: TrainConfig, splits: tuple[str, ...], manifest: dict[str, Any], here: str
) -> dict[str, Any]:
    import ray.data
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out = {}
    for s in splits:
        paths = shard_paths(root, dataset, s, manifest)
        stream = cfg.materialize_mib == 0 or in_memory_mib(paths) > cfg.materialize_mib
        ds = ray.data.read_parquet(
            paths,
            # a new file order every epoch (Ray reseeds per execution): the shuffle buffer then mixes across files
            shuffle=ray.data.FileShuffleConfig(seed=cfg.seed) if stream and s == "train" else None,
            # each read task is a Ray worker process (100-200 MiB): 0 CPUs put no bound on how many run at once
            # (a 1.8 GiB split started 91 of them); one per training worker
            concurrency=min(read_tasks(cfg), len(paths)),
            ray_remote_args={
                # the files are on this node only; reads must not wait for the CPUs the training workers hold
                "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False),
                "num_cpus": 0,
            },
        )
        out[s] = ds if stream else ds.materialize()
    return out


def data_config(cfg: TrainConfig) -> Any:
    """Ray Train's ingest settings: every split divided equally among the workers, blocks in file order (so one
    worker sees the same rows in the same order for the same seed), and at most ``train.ingest_object_store_mib``
    of blocks in flight in the object store (None: Ray Data's own budget, a share of the store)."""
    import ray.train
    from ray.data import ExecutionOptions, ExecutionResources

    mib = cfg.ingest_object_store_mib
    limits = ExecutionResources.for_limits(object_store_memory=mib * 2**20) if mib else None
    return ray.train.DataConfig(
        datasets_to_split="all", execution_options=ExecutionOptions(preserve_order=True, resource_limits=limits)
    )
