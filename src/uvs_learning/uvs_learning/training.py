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


#: what a prior's training reports that nk_adapt's model, made from it, reports too
_PRIOR_FACTS = ("data_hash", "samples", "trajectories", "val_samples", "val_loss",
                "train_loss", "epochs_run", "best_epoch")


def adapt_from_prior(prior: str | Path, task, dataset, out: str | Path, seed: int = 0,
                     epochs: int | None = None, **params: Any) -> dict:
    """nk_adapt's model from an nk_tanh model trained on ``dataset``, without training.

    nk_adapt trains its prior exactly as nk_tanh (same network, loss, seed), so when
    both are trained on the same data with the same parameters the prior *is* that
    nk_tanh model (``uvs benchmark`` uses this to train the network once). ``out``
    becomes a tiny directory whose metadata names ``prior`` (relative) and holds the
    online ``params`` (NeuralKinematicsAdapt.save_reference). ValueError when a
    training parameter in ``params`` differs from the prior's: that model would be
    another network. ``epochs``, ``seed``: as train_model takes them (the prior's).

    Scored as :func:`train_model` scores it (mean |J - J*|_F on the held-out
    trajectories, the rank projection included); the prior's training facts
    (val_loss, epochs_run, ...) are reported as this model's, fit_seconds 0.
    Returns the metadata plus timing and ``path``, as train_model does.
    """
    from uvs_core.estimators.base import read_metadata
    from uvs_learning.nk_adapt import ADAPT_DEFAULTS, NeuralKinematicsAdapt

    t_start = time.perf_counter()
    prior = Path(prior)
    prior_meta = read_metadata(prior)
    trained_with = prior_meta.get("params", {})
    # epochs and seed as train_model takes them: an explicit epochs wins over params'.
    if epochs is not None:
        params["epochs"] = int(epochs)
    if "seed" not in params:
        params["seed"] = int(seed)
    differ = sorted(k for k, v in params.items()
                    if k not in ADAPT_DEFAULTS and trained_with.get(k, v) != v)
    if differ:
        raise ValueError(f"nk_adapt: {differ} differ from the prior's at {prior}; "
                         "train it with train_model")
    online = {k: v for k, v in params.items() if k in ADAPT_DEFAULTS}
    est = NeuralKinematicsAdapt.from_prior(prior, task, **online)

    t0 = time.perf_counter()
    traj = np.asarray(dataset.traj)
    qa = np.asarray(task.select(np.asarray(dataset.q, dtype=np.float64)), dtype=np.float64)
    fraction = float(est.params.get("val_fraction", 0.0)) or DEFAULT_VAL_FRACTION
    val = split_by_trajectory(traj, fraction, int(est.params.get("seed", seed)))
    errors = jacobian_errors(est, task, qa[val] if val.any() else qa)
    eval_seconds = time.perf_counter() - t0

    est.info.update({k: prior_meta[k] for k in _PRIOR_FACTS if k in prior_meta})
    est.info.update({"jacobian_frobenius_mean": float(np.mean(errors)),
                     "jacobian_frobenius_median": float(np.median(errors)),
                     "fit_seconds": 0.0})
    t0 = time.perf_counter()
    path = est.save_reference(out)
    save_seconds = time.perf_counter() - t0
    # The directory holds the online params; the result, as train_model's, all of them.
    result = {**read_metadata(path), "params": dict(est.params)}
    result.update({"path": str(path), "prior_source": est.info["prior_source"],
                   "eval_seconds": eval_seconds, "save_seconds": save_seconds,
                   "total_seconds": time.perf_counter() - t_start})
    return result
