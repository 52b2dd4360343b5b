"""Train any registered estimator on a Dataset and write a model directory.

``train_model`` is what ``uvs train`` calls: it selects the task's active
joints from the recorded joint positions, fits the estimator, scores it on
the held-out trajectories against the true Jacobian of the simulated task,
and saves ``metadata.json`` + weights atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from uvs_core.estimators import estimator_class, split_by_trajectory

#: held-out fraction used for scoring estimators that have no split of their own
DEFAULT_VAL_FRACTION = 0.15


def jacobian_errors(estimator, task, qa: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """||J_hat(q) - J*(q)||_F per configuration: qa (N, k) rad -> (N,), task units per rad."""
    out = np.empty(qa.shape[0])
    for s in range(0, qa.shape[0], chunk):
        q = qa[s:s + chunk]
        diff = estimator.estimate_batch(q) - np.asarray(task.jacobian(q))
        out[s:s + chunk] = np.sqrt(np.sum(diff * diff, axis=(1, 2)))
    return out


def train_model(
    name: str,
    task,
    dataset,
    out: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float, float], None] | None = None,
    log: Callable[[str], None] | None = None,
    data_hash: str | None = None,
    loss: str | None = None,
    huber_delta: float | None = None,
    **params: Any,
) -> dict:
    """Fit estimator ``name`` for ``task`` on ``dataset``; optionally save it to ``out``.

    dataset: a uvs_core.dataset.Dataset (q (N, n) rad, x (N, m), traj (N,)).
    epochs, seed: passed to estimators that take them (ignored otherwise).
    progress(epoch, epochs, train_loss, val_loss): called once per epoch.
    log(message): human-readable milestones.
    data_hash: identifies the training data (e.g. dataset.file_hash of the
    bag) and is stored in the metadata.
    loss, huber_delta: the training loss of the neural estimators, "mse" (the
    paper's) or "huber" (robust to tracker outliers), and Huber's threshold in
    normalised task units (None: the estimator's default); ValueError for an
    estimator without a training loss (tj, broyden, llknn).

    Returns the model metadata (estimator, task, robot, m, k, active,
    params, data_hash, val_loss, jacobian_frobenius_mean, epochs_run,
    best_epoch, uvs_version, created, ...) plus timing (fit_seconds,
    eval_seconds, save_seconds, total_seconds) and ``path`` when saved.
    """
    t_start = time.perf_counter()
    say = log or (lambda message: None)
    q = np.asarray(dataset.q, dtype=np.float64)
    x = np.asarray(dataset.x, dtype=np.float64)
    traj = np.asarray(dataset.traj)
    dataset_task = getattr(dataset, "task", task.name)
    if dataset_task != task.name:
        raise ValueError(f"dataset was recorded for task {dataset_task!r}, not {task.name!r}")
    if q.ndim != 2 or q.shape[1] != task.robot.n:
        raise ValueError(f"dataset q must be (N, {task.robot.n}), got {q.shape}")
    qa = np.asarray(task.select(q), dtype=np.float64)

    est_cls = estimator_class(name)
    accepted = est_cls.default_params(task)
    if "epochs" in accepted and epochs is not None:
        params["epochs"] = int(epochs)
    if "seed" in accepted:
        params.setdefault("seed", int(seed))
    for key, value in (("loss", loss), ("huber_delta", huber_delta)):
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(f"{name} has no training loss to set ({key}); "
                             "the neural estimators (nj, binj, nk_*) have")
        params[key] = value
    est = est_cls(task, **params)

    say(f"training {name} for {task.name} on {qa.shape[0]} samples "
        f"({np.unique(traj).size} trajectories)")
    t0 = time.perf_counter()
    report = est.fit(qa, x, traj, progress=progress)
    fit_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    fraction = float(est.params.get("val_fraction", 0.0)) or DEFAULT_VAL_FRACTION
    val = split_by_trajectory(traj, fraction, int(est.params.get("seed", seed)))
    eval_q = qa[val] if val.any() else qa
    errors = jacobian_errors(est, task, eval_q)
    eval_seconds = time.perf_counter() - t0

    val_loss = report.get("val_loss", float("nan"))
    est.info.update({
        "data_hash": data_hash,
        "samples": int(qa.shape[0]),
        "trajectories": int(np.unique(traj).size),
        "val_samples": int(eval_q.shape[0]),
        "val_loss": None if val_loss is None else float(val_loss),
        "train_loss": report.get("train_loss"),
        "jacobian_frobenius_mean": float(np.mean(errors)),
        "jacobian_frobenius_median": float(np.median(errors)),
        "epochs_run": report.get("epochs_run", 0),
        "best_epoch": report.get("best_epoch", 0),
        "fit_seconds": fit_seconds,
    })
    say(f"{name}: val_loss {est.info['val_loss']:.4g}, "
        f"mean |J - J*|_F {est.info['jacobian_frobenius_mean']:.4g} "
        f"over {eval_q.shape[0]} held-out configurations, fit {fit_seconds:.1f} s")

    result = est.metadata()
    save_seconds = 0.0
    if out is not None:
        t0 = time.perf_counter()
        path = est.save(out)
        save_seconds = time.perf_counter() - t0
        result["path"] = str(path)
        say(f"wrote {path}")
    result.update({
        "history": report.get("history", []),
        "eval_seconds": eval_seconds,
        "save_seconds": save_seconds,
        "total_seconds": time.perf_counter() - t_start,
    })
    return result
