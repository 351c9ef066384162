"""The per-worker memory cap (``train.max_worker_mib``): a Ray Train worker that holds more than its share fails.

A dataset larger than memory streams through the workers (:mod:`components.training.ingest`); the cap makes "a
worker never holds the split" a checked property, not a hope. :class:`MemoryGuard` measures the worker's own
memory at every batch :class:`~components.training.ingest.ShardBatches` yields and raises
:class:`WorkerMemoryError`, one line, above the cap.

What counts is the process's private resident memory: ``rss - shared`` of ``/proc/<pid>/statm`` (psutil's
``memory_info``; on Linux the anonymous resident pages: tensors, batches, the shuffle buffer, the model, the
optimizer). Pages mapped from files (libraries) and shared memory (the blocks of Ray's object store the worker
reads) are excluded: they are not the worker's to hold, and the window of blocks in flight is bounded on its own
(``train.ingest_object_store_mib``). Reading statm costs microseconds: every batch is checked, and with a cap a
thread samples every 10 ms in between (a train step's own peak lasts milliseconds); :attr:`MemoryGuard.peak_mib` is
the largest value seen. :class:`ProcessPeaks` samples the same figures (and RSS,
PSS, USS, the object-store pages) of every worker from the driver, for tests and benchmarks.

The guard is a failure like any other to Ray Train: the run is retried up to ``train.max_failures`` times, then the
stage fails with the guard's line.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from components.errors import GenfoundryError

MIB = 2**20


class WorkerMemoryError(GenfoundryError):
    """A Ray Train worker went above ``train.max_worker_mib``."""


def private_mib(process: Any = None) -> float:
    """Private resident memory of ``process`` (a ``psutil.Process``; default: this process), MiB."""
    import psutil

    m = (process or psutil.Process()).memory_info()
    return (m.rss - getattr(m, "shared", 0)) / MIB


class MemoryGuard:
    """Checks this process against ``max_mib`` (None: measures only) at every :meth:`check`; ``where`` names
    the worker in the message (e.g. ``rank 1``).

    A train step's activations and gradients come and go between two checks (a VAE step on 256 64x64 images: +150
    MiB for a few milliseconds), so with a cap a thread also samples the process every ``every_s`` seconds and
    :meth:`check` compares the largest value since the last check: a step above the cap fails at the next batch."""

    def __init__(self, max_mib: float | None, *, where: str, every_s: float = 0.01) -> None:
        import psutil

        if max_mib is not None and max_mib <= 0:
            raise ValueError(f"MemoryGuard: expected max_mib > 0 or None, got {max_mib}")
        self.max_mib, self.where, self.every_s = max_mib, where, every_s
        self.process = psutil.Process()
        self.peak_mib = 0.0
        self.checks = 0
        self._since = 0.0  # the sampler's largest value since the last check
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def check(self, *, context: str = "") -> float:
        """Measure now; raise :class:`WorkerMemoryError` if this or any sample since the last check is above the
        cap. Returns the MiB measured (the largest of them)."""
        if self.max_mib is not None and self._thread is None:
            self._thread = threading.Thread(target=self._sample, daemon=True, name="memory-guard")
            self._thread.start()
        with self._lock:
            used, self._since = max(private_mib(self.process), self._since), 0.0
        self.checks += 1
        self.peak_mib = max(self.peak_mib, used)
        if self.max_mib is not None and used > self.max_mib:
            at = f" by {context}" if context else ""
            raise WorkerMemoryError(
                f"train: expected worker memory <= {self.max_mib:g} MiB (train.max_worker_mib), got {used:.0f} MiB "
                f"private RSS on {self.where}{at}; lower train.shuffle_buffer or train.batch_size, or raise "
                "train.max_worker_mib"
            )
        return used

    def _sample(self) -> None:
        while True:
            used = private_mib(self.process)
            with self._lock:
                self._since = max(self._since, used)
            time.sleep(self.every_s)


TRAIN_WORKER_TITLE = "ray::RayTrainWorker"  # the process title Ray gives a Ray Train worker
OBJECT_STORE_MAPPING = "/dev/shm/plasma"  # the shared-memory file of Ray's object store, as /proc/<pid>/smaps names it


def object_store_mib(pid: int) -> float:
    """Resident pages of Ray's object store mapped by process ``pid`` (MiB): counted in its RSS, not its own."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:  # a mapping's header line
                inside = OBJECT_STORE_MAPPING in line
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total / 1024


class ProcessPeaks:
    """Peak memory of this process and of the Ray Train workers it started (a local Ray instance: the workers
    descend from this process; found by their process title), sampled by a thread every ``every_s`` seconds
    while the ``with`` block runs: for tests and benchmarks.

    Per process (``workers``: pid -> peaks; ``driver``): ``rss``, ``pss`` (shared pages divided among their
    users), ``uss`` (pages only this process maps) and ``private`` (what :class:`MemoryGuard` checks), in MiB; for
    the workers also ``object_store`` (the resident pages of Ray's object store they map, part of their RSS) and
    ``rss_own`` (RSS without them), read from ``/proc/<pid>/smaps`` every ``smaps_every``-th sample (it costs
    milliseconds)."""

    KEYS = ("rss", "pss", "uss", "private")
    WORKER_KEYS = (*KEYS, "object_store", "rss_own")

    def __init__(self, *, every_s: float = 0.25, title: str = TRAIN_WORKER_TITLE, smaps_every: int = 4,
                 trace: bool = False) -> None:  # fmt: skip
        import psutil

        self.every_s, self.title, self.smaps_every = every_s, title, smaps_every
        self.trace: list[tuple[float, int, float]] | None = [] if trace else None  # (monotonic s, pid, private MiB)
        self.me = psutil.Process()
        self.workers: dict[int, dict[str, float]] = {}
        self.driver: dict[str, float] = dict.fromkeys(self.KEYS, 0.0)
        self.samples = 0
        self.max_processes = 0  # the most processes under this one at once (Ray's own, read tasks, the workers)

    def __enter__(self) -> ProcessPeaks:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="process-peaks")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def worker_peak(self, key: str) -> float:
        """The largest ``key`` (rss, pss, uss, private) of any worker; 0 if none was seen."""
        return max((p[key] for p in self.workers.values()), default=0.0)

    def _poll(self) -> None:
        import psutil

        known: dict[int, Any] = {}
        while True:
            try:
                children = self.me.children(recursive=True)
                self.max_processes = max(self.max_processes, len(children))
                for child in children:
                    if child.pid not in known:
                        try:
                            if " ".join(child.cmdline()).startswith(self.title):
                                known[child.pid] = child
                        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                            continue
                smaps = self.samples % self.smaps_every == 0
                for pid, proc in list(known.items()):
                    peaks = self.workers.setdefault(pid, dict.fromkeys(self.WORKER_KEYS, 0.0))
                    if not self._sample(proc, peaks, smaps=smaps):
                        del known[pid]
                    elif self.trace is not None:
                        self.trace.append((time.monotonic(), pid, self._last_private))
                self._sample(self.me, self.driver)
                self.samples += 1
            except psutil.Error:
                pass
            if self._stop.wait(self.every_s):
                return

    def _sample(self, proc: Any, peaks: dict[str, float], *, smaps: bool = False) -> bool:
        import psutil

        try:
            m = proc.memory_full_info()
            now = {"rss": m.rss, "pss": getattr(m, "pss", 0), "uss": m.uss, "private": m.rss - getattr(m, "shared", 0)}
            now = {k: v / MIB for k, v in now.items()}
            if smaps:
                now["object_store"] = object_store_mib(proc.pid)
                now["rss_own"] = now["rss"] - now["object_store"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            return False
        for k, v in now.items():
            peaks[k] = max(peaks[k], v)
        self._last_private = now["private"]
        return True
