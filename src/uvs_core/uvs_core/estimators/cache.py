"""Models made on first use: built from deterministic babbling, cached on disk.

Some estimators are cheap to make but too large to ship, or too small to be worth
a file: LL-KNN's model is the babbling itself (100,000 x (7 + 3) float64, 8 MB,
for single_point; 30 MB for multi_point), and fitting it is only building an
index; Broyden's is its first Jacobian, the local linear fit of the babbling near
the start pose (DESIGN.md: "initialised from data"). For these
(:data:`FIRST_USE`), when no model directory is given or shipped, the model is
made the first time it is asked for, from the babbling the shipped models are
trained on (the paper protocol's OU babbling, seed 0, the protocol's sample
count for the task), and written to::

    <cache root>/models/<robot>/<task>/<estimator>/   metadata.json + weights

where the cache root is ``$UVS_CACHE``, else ``$XDG_CACHE_HOME/uvs``, else
``~/.cache/uvs``. The babbling is deterministic, so every machine makes the
same model; ``metadata.json`` records the recipe and the SHA-256 of the
babbled arrays (``data_hash``). The directory is written atomically (a
temporary sibling renamed when complete, see ``write_model_dir``), so a build
that is killed leaves nothing that looks like a model. Later uses load it.

A cached model that cannot be loaded (corrupt, truncated, made by another
recipe) is rebuilt, with the reason passed to ``log``: it holds nothing but
what can be made again.

No rclpy and no torch here: the estimator node and the ``uvs`` verbs call
:func:`first_use_model`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uvs_core.estimators.base import ModelError, read_metadata

__all__ = [
    "FIRST_USE",
    "RECIPE_VERSION",
    "build_model",
    "cache_root",
    "cached_model_path",
    "data_hash",
    "first_use_model",
    "recipe",
]

#: estimators whose model is made on first use rather than shipped: LL-KNN's samples,
#: and Broyden's first Jacobian (fitted on the babbling near the start pose, as
#: `uvs benchmark` fits it; from the default 0.1 I it barely moved: 0 % live)
FIRST_USE: frozenset[str] = frozenset({"llknn", "broyden"})

#: bump when the way a cached model is made changes, so older caches are rebuilt
RECIPE_VERSION = 1

#: babbling protocol variant of the cached models (uvs_core.evaluation.PROTOCOL_VARIANTS)
PROTOCOL_VARIANT = "paper"


def cache_root() -> Path:
    """Root of uvs's cache: ``$UVS_CACHE``, else ``$XDG_CACHE_HOME/uvs``, else ``~/.cache/uvs``."""
    env = os.environ.get("UVS_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "uvs"


def cached_model_path(name: str, task) -> Path:
    """``<cache root>/models/<robot>/<task>/<name>``: where ``name``'s cached model is."""
    return cache_root() / "models" / task.robot.name / task.name / name


def recipe(name: str, task) -> dict:
    """How the cached model of ``name`` for ``task`` is made (stored in its metadata).

    The paper protocol's babbling (uvs_core.evaluation.protocol(task, "paper")):
    its sample count (100,000 single_point, 200,000 multi_point, 10,000
    visual_servo), seed 0, and its OU and start conventions; the estimator's
    default parameters.
    """
    from uvs_core.evaluation import protocol

    proto = protocol(task.name, PROTOCOL_VARIANT)
    options = proto.babble_options(task.robot.n)
    options["seed"] = 0
    return {
        "recipe_version": RECIPE_VERSION,
        "protocol": PROTOCOL_VARIANT,
        "samples": int(proto.samples),
        "babble": {key: (value.tolist() if isinstance(value, np.ndarray) else value)
                   for key, value in options.items()},
    }


def data_hash(dataset) -> str:
    """SHA-256 of a dataset's arrays: q (N, n) float64, x (N, m) float64, traj (N,) int64,
    in that order, C order, native byte order."""
    digest = hashlib.sha256()
    for array, dtype in ((dataset.q, np.float64), (dataset.x, np.float64),
                         (dataset.traj, np.int64)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def build_model(name: str, task, path: str | os.PathLike,
                progress: Callable[[int, int], None] | None = None,
                log: Callable[[str], None] | None = None) -> Path:
    """Babble by :func:`recipe`, fit estimator ``name`` and write its model to ``path``.

    progress(done_samples, total_samples): called while babbling. log(message):
    milestones. The metadata holds what ``uvs train`` writes (samples,
    trajectories, val_loss, jacobian_frobenius_mean/median over the held-out
    trajectories, m/rad or px/rad, fit_seconds, data_hash) plus ``recipe``.
    The directory is written atomically. Returns ``path``.
    """
    from uvs_core.babble import babble
    from uvs_core.estimators import make_estimator, split_by_trajectory

    say = log or (lambda message: None)
    how = recipe(name, task)
    samples = how["samples"]
    say(f"making the {name} model of {task.name} on first use: babbling {samples:,} samples "
        f"({how['protocol']} protocol, seed 0)")
    t0 = time.perf_counter()
    options = {key: (np.asarray(value, dtype=float) if key == "start" and value is not None
                     else value) for key, value in how["babble"].items()}
    dataset = babble(task, samples, progress=progress, **options)
    qa = np.asarray(task.select(dataset.q), dtype=np.float64)
    say(f"{name}: fitting on {qa.shape[0]:,} samples")
    est = make_estimator(name, task)
    t1 = time.perf_counter()
    report = est.fit(qa, dataset.x, dataset.traj)
    fit_seconds = time.perf_counter() - t1
    # Scored as uvs train scores a model: against the true Jacobian on the held-out
    # trajectories (LL-KNN keeps every sample, so these are fitted ones too).
    val = split_by_trajectory(dataset.traj, 0.15, 0)
    held = qa[val]
    errors = np.sqrt(np.sum((est.estimate_batch(held) - np.asarray(task.jacobian(held))) ** 2,
                            axis=(1, 2)))
    est.info.update({
        "data_hash": data_hash(dataset),
        "recipe": how,
        "made": "on first use (uvs_core.estimators.cache)",
        "samples": int(qa.shape[0]),
        "trajectories": int(np.unique(dataset.traj).size),
        "val_samples": int(held.shape[0]),
        "val_loss": report.get("val_loss"),
        "jacobian_frobenius_mean": float(np.mean(errors)),
        "jacobian_frobenius_median": float(np.median(errors)),
        "epochs_run": 0,
        "best_epoch": 0,
        "fit_seconds": fit_seconds,
    })
    written = est.save(path)
    say(f"{name}: wrote {written} in {time.perf_counter() - t0:.1f} s "
        f"(mean |J - J*|_F {est.info['jacobian_frobenius_mean']:.4g} held out)")
    return written


def _stale_reason(name: str, task, path: Path) -> str | None:
    """Why the cached model at ``path`` cannot be used, None when it can (metadata only)."""
    try:
        meta = read_metadata(path)
    except ModelError as exc:
        return str(exc)
    if meta.get("recipe") != recipe(name, task):
        return f"{path / 'metadata.json'}: made by another recipe"
    return None


def first_use_model(name: str, task, loader: Callable[[Path], object],
                    progress: Callable[[int, int], None] | None = None,
                    log: Callable[[str], None] | None = None):
    """The cached model of ``name`` for ``task``, loaded by ``loader(path)``; made first
    when it is missing, unloadable or made by another recipe.

    loader(path) loads and checks a model directory and raises on failure (e.g.
    ``lambda p: load_estimator(p, task, name)``). Returns (loader's result, path).
    ValueError when ``name`` is not made on first use. Raises what ``loader``
    raises should a freshly built model fail to load.
    """
    if name not in FIRST_USE:
        raise ValueError(f"estimator {name!r} is not made on first use "
                         f"(those are: {', '.join(sorted(FIRST_USE))})")
    path = cached_model_path(name, task)
    say = log or (lambda message: None)
    if path.exists():
        reason = _stale_reason(name, task, path)
        if reason is None:
            try:
                return loader(path), path
            # Whatever the loader raises for a broken cache (ModelError, a torch or
            # numpy deserialiser's error) means the same: make it again.
            except Exception as exc:  # noqa: BLE001
                reason = f"{type(exc).__name__}: {exc}"
        say(f"cached {name} model {path} is unusable ({reason}); making it again")
    try:
        build_model(name, task, path, progress=progress, log=log)
    except OSError:
        # Another process may have made it at the same time (the rename of a complete
        # directory over a complete one fails): use theirs when it is good.
        if _stale_reason(name, task, path) is not None:
            raise
    return loader(path), path
