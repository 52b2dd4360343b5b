"""Where the benchmark's and the sweep's jobs run: inline, a local process pool, or Ray.

A job is ``(fn, args)`` with ``fn`` a module-level function (picklable by reference)
and ``args`` picklable; ``run_jobs`` calls ``on_done(result)`` in the calling process
as each job ends, in completion order (callers key results by their content, so the
order does not change what they write).

- ``local`` (the default): ``workers <= 1`` runs the jobs inline; more starts a spawn
  process pool of ``workers`` processes with one BLAS/torch thread each.
- ``ray``: every job is a Ray task (``num_cpus=1``). Without ``address`` a local Ray
  instance with ``num_cpus=workers`` is started (and shut down afterwards); with
  ``address`` (``auto``, ``HOST:6379`` or ``ray://HOST:10001``) an existing cluster is
  joined, whose nodes must have the same uvs installed and see ``OUT`` at the same path.
  A Ray session already started by the caller (``ray.is_initialized()``) is reused.

Ray is an optional extra (requirements-ray.txt), imported only by the ``ray``
executor; uvs_core never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EXECUTORS = ("local", "ray")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RAY_INSTALL = "pip install -r requirements-ray.txt"
#: seconds between checks for finished jobs (progress callbacks run this often)
POLL_SECONDS = 0.5

Job = tuple[Callable[..., Any], tuple]


class ExecutorError(RuntimeError):
    """The executor cannot run (Ray missing, a cluster unreachable)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """kind: 'local' or 'ray'; workers: processes of the local pool or CPUs of a local
    Ray instance; address: a Ray cluster to join (None: start a local instance)."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor {self.kind!r}: choose from {', '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise ValueError("--address needs --executor ray")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


def import_ray():
    """The ray module, or ExecutorError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: "
                            f"{RAY_INSTALL}") from None
    return ray


class Executor:
    """Runs jobs; see the module docstring. Use through ``open_executor``."""

    kind = "inline"

    def run_jobs(self, jobs: list[Job], on_done: Callable[[Any], None],
                 poll: Callable[[], None] | None = None) -> None:
        """Run every job, calling on_done(result) as each ends and poll() between."""
        for fn, args in jobs:
            on_done(fn(*args))
            if poll:
                poll()

    def queue(self):
        """A context manager yielding a progress queue jobs can put to (put / empty /
        get_nowait), or None where jobs cannot reach one."""
        return _null()


class _PoolExecutor(Executor):
    kind = "local"

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    def run_jobs(self, jobs, on_done, poll=None) -> None:
        pending = {self.pool.submit(fn, *args) for fn, args in jobs}
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if poll:
                poll()
            for fut in done:
                on_done(fut.result())

    def queue(self):
        return _manager_queue()


class _RayExecutor(Executor):
    kind = "ray"

    def __init__(self, ray) -> None:
        self.ray = ray
        self._remote: dict[Callable, Any] = {}

    def _put(self, value):
        # Large arguments (a dataset) go to the object store once per run_jobs call.
        if isinstance(value, (str, int, float, bool, type(None), dict, list, tuple)):
            return value
        return self.ray.put(value)

    def run_jobs(self, jobs, on_done, poll=None) -> None:
        ray = self.ray
        stored: dict[int, Any] = {}
        pending = []
        for fn, args in jobs:
            if fn not in self._remote:
                self._remote[fn] = ray.remote(num_cpus=1, max_retries=0)(fn)
            refs = []
            for a in args:
                if id(a) not in stored:
                    stored[id(a)] = (a, self._put(a))   # keep `a` alive: ids stay unique
                refs.append(stored[id(a)][1])
            pending.append(self._remote[fn].remote(*refs))
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            if poll:
                poll()
            for ref in done:
                on_done(ray.get(ref))

    def queue(self):
        return _null()


@contextmanager
def _null():
    yield None


@contextmanager
def _manager_queue():
    import multiprocessing

    with multiprocessing.get_context("spawn").Manager() as manager:
        yield manager.Queue()


@contextmanager
def _one_thread_env() -> Iterator[None]:
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update({v: "1" for v in THREAD_VARS})
    try:
        yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


@contextmanager
def open_executor(spec: ExecutorSpec, jobs: int | None = None) -> Iterator[Executor]:
    """An Executor for ``spec``; ``jobs`` (how many will run, if known) caps the local
    pool's size. ExecutorError when Ray is missing or its cluster cannot be joined."""
    if spec.kind == "ray":
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            env = {"env_vars": {v: "1" for v in THREAD_VARS}}
            try:
                if spec.address is None:
                    ray.init(num_cpus=spec.workers, include_dashboard=False,
                             log_to_driver=False, logging_level="WARNING", runtime_env=env)
                else:
                    ray.init(address=spec.address, log_to_driver=False,
                             logging_level="WARNING", runtime_env=env)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"Ray at {spec.address or 'a local instance'}: "
                                    f"{exc}") from None
            started = True
        try:
            yield _RayExecutor(ray)
        finally:
            if started:
                ray.shutdown()
        return
    workers = spec.workers if jobs is None else min(spec.workers, max(jobs, 1))
    if workers <= 1:
        yield Executor()
        return
    import multiprocessing

    with _one_thread_env(), ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield _PoolExecutor(pool)


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "ExecutorSpec", "RAY_INSTALL",
           "import_ray", "open_executor"]
