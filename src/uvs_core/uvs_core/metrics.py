"""The paper's metrics (section IV) on rollout records: the distance to the target, success
averaged over thresholds and binned by initial distance (Tables I-II), the
positive-definiteness criterion J* pinv(J_hat) > 0, and ``summarize``, which turns one
estimator's records into the benchmark's numbers (Figures 4-6).

Split from ``uvs_core.evaluation`` (the protocols and the rollouts), which re-exports
every name here. Shapes: ``N`` trajectories, ``T`` control steps, ``m`` task dimension,
``k`` active joints. Units: task units (m or px), rad. No torch, no plotting.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from uvs_core.control import pseudo_inverse
from uvs_core.tasks import POSE_METRES_PER_RAD, so3_exp, so3_log

if TYPE_CHECKING:
    from uvs_core.evaluation import Protocol

__all__ = ["QUANTILES", "task_distance", "threshold_success", "bin_indices", "binned_success",
           "positive_definite", "summarize", "tracking_metrics"]

#: condition-number quantiles reported (percent)
QUANTILES = (0, 5, 25, 50, 75, 95, 100)


def task_distance(x: np.ndarray, x_star: np.ndarray, kind: str = "euclidean") -> np.ndarray:
    """Distance to the target: x, x_star (..., m) -> (...,) task units.

    kind "euclidean": |x* - x|. "sum_of_points": x holds m/3 stacked 3-D points;
    the sum of their Euclidean distances (the paper's multi-point measure).
    "pose" (x = (p, phi), the pose task): max(|p* - p|, POSE_METRES_PER_RAD * angle),
    m, angle the rotation angle of R* R^T (rad); so distance < t exactly when the
    position error < t AND the angle < t / POSE_METRES_PER_RAD. "position", "angle":
    the pose task's two parts alone (m, rad).
    """
    if kind in ("pose", "position", "angle"):
        xs, xt = np.asarray(x, dtype=float), np.asarray(x_star, dtype=float)
        if xs.shape[-1] != 6:
            raise ValueError(f"{kind} distance needs the pose task's x (m = 6), "
                             f"got m = {xs.shape[-1]}")
        pos = np.linalg.norm(xt[..., :3] - xs[..., :3], axis=-1)
        rot = so3_exp(xt[..., 3:]) @ np.swapaxes(so3_exp(xs[..., 3:]), -1, -2)
        ang = np.linalg.norm(so3_log(rot), axis=-1)
        if kind == "position":
            return pos
        if kind == "angle":
            return ang
        return np.maximum(pos, POSE_METRES_PER_RAD * ang)
    d = np.asarray(x_star, dtype=float) - np.asarray(x, dtype=float)
    if kind == "euclidean":
        return np.linalg.norm(d, axis=-1)
    if kind == "sum_of_points":
        if d.shape[-1] % 3:
            raise ValueError(f"sum_of_points needs 3-D points, got m = {d.shape[-1]}")
        return np.linalg.norm(d.reshape(*d.shape[:-1], -1, 3), axis=-1).sum(axis=-1)
    raise ValueError(f"unknown distance {kind!r}; use 'euclidean', 'sum_of_points', "
                     f"'pose', 'position' or 'angle'")


def threshold_success(final: np.ndarray, thresholds: np.ndarray) -> float:
    """Success % averaged over thresholds: mean over t of the share of final < t.

    final: (N,) final distances (NaN counts as failure); thresholds: (P,).
    Returns NaN for N = 0.
    """
    final = np.asarray(final, dtype=float).reshape(-1)
    if final.size == 0:
        return float("nan")
    f = np.where(np.isnan(final), np.inf, final)
    hits = f[:, None] < np.asarray(thresholds, dtype=float)[None, :]
    return float(100.0 * hits.mean())


def bin_indices(initial: np.ndarray, edges) -> np.ndarray:
    """Bin of each initial distance: (N,) -> (N,) int in 0..len(edges)-1.

    Bin i is [edges[i], edges[i+1]); len(edges)-1 is the open bin >= edges[-1].
    Distances below edges[0] go to bin 0.
    """
    edges = np.asarray(edges, dtype=float)
    idx = np.searchsorted(edges, np.asarray(initial, dtype=float), side="right") - 1
    return np.clip(idx, 0, edges.size - 1)


def _bin_label(lo: float, hi: float) -> str:
    fmt = "{:.0f}" if max(abs(lo), abs(hi) if math.isfinite(hi) else 0) >= 10 else "{:.1f}"
    return f">= {fmt.format(lo)}" if not math.isfinite(hi) else \
        f"{fmt.format(lo)}-{fmt.format(hi)}"


def binned_success(initial: np.ndarray, final: np.ndarray, edges,
                   thresholds: np.ndarray) -> dict:
    """Table row: success % per initial-distance bin and in total.

    initial, final: (N,) distances; edges: bin edges (see bin_indices);
    thresholds: (P,). Returns {"total", "n", "bins": [{"lo", "hi", "label", "n",
    "success"}, ...]} with the open last bin only when it holds trajectories;
    an empty bin's success is None.
    """
    initial = np.asarray(initial, dtype=float)
    final = np.asarray(final, dtype=float)
    edges = [float(e) for e in edges]
    idx = bin_indices(initial, edges)
    bins = []
    for i in range(len(edges)):
        lo, hi = edges[i], (edges[i + 1] if i + 1 < len(edges) else math.inf)
        sel = idx == i
        if i + 1 == len(edges) and not sel.any():
            break
        value = threshold_success(final[sel], thresholds)
        bins.append({"lo": lo, "hi": hi if math.isfinite(hi) else None,
                     "label": _bin_label(lo, hi), "n": int(sel.sum()),
                     "success": None if math.isnan(value) else value})
    total = threshold_success(final, thresholds)
    return {"total": None if math.isnan(total) else total, "n": int(final.size),
            "bins": bins}


def positive_definite(j_true: np.ndarray, j_hat: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Convergence criterion J* pinv(J_hat) > 0 (its symmetric part positive definite).

    j_true, j_hat: (..., m, k). Returns (...,) bool: the smallest eigenvalue of
    sym(J* J_hat+) (m x m) exceeds rtol times the largest |eigenvalue| (float
    noise on a semi-definite matrix is not definiteness). False where J_hat
    is not finite, and always False when m > rank(J_hat) (e.g. multi-point).
    """
    j_true = np.asarray(j_true, dtype=float)
    j_hat = np.asarray(j_hat, dtype=float)
    finite = np.all(np.isfinite(j_hat), axis=(-2, -1)) & np.all(np.isfinite(j_true),
                                                                  axis=(-2, -1))
    safe = np.where(finite[..., None, None], j_hat, 0.0)
    prod = j_true @ pseudo_inverse(safe)
    sym = 0.5 * (prod + np.swapaxes(prod, -1, -2))
    eig = np.linalg.eigvalsh(np.where(finite[..., None, None], sym, 0.0))
    scale = np.max(np.abs(eig), axis=-1)
    return finite & (eig[..., 0] > rtol * scale)


def tracking_metrics(error: np.ndarray, dt: float, settle: float) -> dict:
    """Tracking error of N runs after a settling time.

    error: (N, T + 1) task units at t = 0, dt, ...; settle: s, the samples with
    t >= settle count (the transient before is left out). Returns {"rms": RMS over
    those samples of all runs, "max": their largest, "final": mean of the last ones,
    "rms_per_run": (N,) list, "samples": count}; NaN errors make the numbers None.
    """
    error = np.asarray(error, dtype=float)
    first = int(math.ceil(settle / dt - 1e-9))
    if not 0 <= first < error.shape[1]:
        raise ValueError(f"settle {settle} s leaves no samples of {error.shape[1]} "
                         f"at dt {dt} s")
    kept = error[:, first:]
    finite = bool(np.all(np.isfinite(kept)))
    per_run = np.sqrt(np.mean(kept ** 2, axis=1))
    return {"rms": float(np.sqrt(np.mean(kept ** 2))) if finite else None,
            "max": float(np.max(kept)) if finite else None,
            "final": float(np.mean(kept[:, -1])) if finite else None,
            "rms_per_run": [float(v) if math.isfinite(v) else None for v in per_run],
            "samples": int(kept.size), "settle": float(settle)}


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None}
    return {"n": int(values.size), "mean": float(np.mean(values)),
            "median": float(np.median(values))}


def summarize(protocol: Protocol, distance: np.ndarray, frobenius: np.ndarray,
              condition: np.ndarray, positive_definite: np.ndarray | None,
              halted: np.ndarray | None = None,
              alt_distance: np.ndarray | None = None,
              seed_of: np.ndarray | None = None,
              pd_undefined: np.ndarray | None = None) -> dict:
    """The numbers of one estimator over N trajectories (all seeds concatenated).

    distance: (N, T + 1); frobenius, condition: (N, T); positive_definite:
    (N, T) bool or None; halted: (N, T) bool; alt_distance: (N, T + 1) or None;
    seed_of: (N,) seed of each trajectory (for the per-seed spread).
    pd_undefined: (N, T) bool, steps where J* is singular (see Rollout).
    Returns a JSON-ready dict: success (binned, averaged over thresholds),
    final distance, Frobenius distance (mean and per step, mean and standard
    error), condition-number quantiles, the positive-definiteness analysis.
    """
    thr = protocol.threshold_values
    initial, final = distance[:, 0], distance[:, -1]
    out: dict = {"trajectories": int(distance.shape[0])}
    out["success"] = binned_success(initial, final, protocol.bin_edges, thr)
    if seed_of is not None:
        per_seed = [threshold_success(final[seed_of == s], thr) for s in np.unique(seed_of)]
        out["success"]["per_seed"] = per_seed
        out["success"]["seed_std"] = float(np.std(per_seed, ddof=1)) \
            if len(per_seed) > 1 else None
    if alt_distance is not None:
        out["success_alt"] = {
            "distance": protocol.alt_distance,
            **binned_success(alt_distance[:, 0], alt_distance[:, -1], protocol.bin_edges, thr),
        }
    out["final_distance"] = _stats(final)
    finite_f = np.where(np.isfinite(frobenius), frobenius, np.nan)
    n_f = np.sum(np.isfinite(finite_f), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_step_mean = np.nanmean(finite_f, axis=0) if np.isfinite(finite_f).any() \
            else np.full(frobenius.shape[1], np.nan)
        per_step_se = np.nanstd(finite_f, axis=0, ddof=1) / np.sqrt(n_f) \
            if np.isfinite(finite_f).any() else per_step_mean
    out["frobenius"] = {
        "mean": float(np.nanmean(finite_f)) if np.isfinite(finite_f).any() else None,
        "median": float(np.nanmedian(finite_f)) if np.isfinite(finite_f).any() else None,
        "per_step_mean": [None if not np.isfinite(v) else float(v) for v in per_step_mean],
        "per_step_se": [None if not np.isfinite(v) else float(v) for v in per_step_se],
    }
    c = condition.reshape(-1)
    finite_c = c[np.isfinite(c)]
    out["condition"] = {
        "steps": int(c.size),
        "infinite": int(np.sum(np.isinf(c))),
        "nan": int(np.sum(np.isnan(c))),
        "quantiles": ({str(q): float(v) for q, v in
                       zip(QUANTILES, np.percentile(finite_c, QUANTILES))}
                      if finite_c.size else None),
    }
    if positive_definite is None:
        out["positive_definite"] = None
    else:
        always = np.all(positive_definite, axis=1)
        out["positive_definite"] = {
            "share": float(np.mean(always)) if always.size else None,
            "step_share": float(np.mean(positive_definite)) if always.size else None,
            "always": {**_stats(final[always]),
                       "success": _nan_none(threshold_success(final[always], thr))},
            "not_always": {**_stats(final[~always]),
                           "success": _nan_none(threshold_success(final[~always], thr))},
            "undefined_steps": None if pd_undefined is None else int(np.sum(pd_undefined)),
        }
    if halted is not None:
        out["halted_steps"] = int(np.sum(halted))
    return out


def _nan_none(v: float):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
