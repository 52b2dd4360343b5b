"""Classical Jacobian estimators (paper baselines): TJ, Broyden, LL-KNN.

None of these imports torch. Shapes: ``qa (k,)`` rad, ``x (m,)`` task units,
``J (m, k)`` task units per rad.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uvs_core.estimators.base import (
    Estimator,
    ModelError,
    NotFittedError,
    load_npz,
    secant_loss,
    split_by_trajectory,
    unique_rows,
)

_RIDGE = 1e-10


def local_linear_jacobians(
    qa_nb: np.ndarray, x_nb: np.ndarray, ridge: float = _RIDGE
) -> np.ndarray:
    """Affine least-squares fit x ~ J q + c per neighbourhood; returns the linear parts.

    qa_nb: (B, K, k) rad, x_nb: (B, K, m). Returns J: (B, m, k).
    Centring each neighbourhood on its mean removes the intercept c exactly,
    so J = (dX^T dQ)(dQ^T dQ)^-1. A ridge relative to the Gram matrix's trace
    (1e-10 by default, far below any real signal) keeps degenerate
    neighbourhoods (repeated samples, fewer than k+1 points) solvable.
    """
    dq = qa_nb - qa_nb.mean(axis=1, keepdims=True)
    dx = x_nb - x_nb.mean(axis=1, keepdims=True)
    gram = np.einsum("bni,bnj->bij", dq, dq)  # (B, k, k)
    cross = np.einsum("bni,bnj->bij", dq, dx)  # (B, k, m)
    k = gram.shape[-1]
    scale = np.trace(gram, axis1=1, axis2=2) / k
    gram = gram + (ridge * scale + 1e-300)[:, None, None] * np.eye(k)
    # J^T = gram^-1 cross
    return np.swapaxes(np.linalg.solve(gram, cross), 1, 2)


class TrueJacobian(Estimator):
    """The analytic Jacobian of the task model (the paper's TJ reference).

    Needs no data; ``task.jacobian(qa)`` in task units per rad.
    """

    name = "tj"
    learned = False

    def _estimate(self, qa):
        return np.asarray(self.task.jacobian(qa), dtype=np.float64)

    def _estimate_batch(self, qa):
        return np.asarray(self.task.jacobian(qa), dtype=np.float64).reshape(
            qa.shape[0], self.m, self.k
        )


class Broyden(Estimator):
    """Broyden's rank-1 secant update (Jagersand 1996), the paper's Broyden baseline.

    After each control step with joint motion dq and observed task motion dx
    (consecutive samples passed to :meth:`update`)::

        J <- J + alpha * (dx - J dq) dq^T / (dq^T dq)

    ``alpha = 1`` (default) is the classic "good Broyden" update: the new J
    satisfies the latest secant condition dx = J dq exactly, the right choice
    for the noise-free kinematic simulation; choose 0.1-0.5 with noisy
    measurements (webcam tracking) so one bad sample cannot wreck J. Steps
    with |dq| < ``min_motion`` rad carry no usable direction and are
    skipped (the previous sample stays the anchor, so slow motion adds up
    to a usable step), which also avoids dividing by ~0 when the arm stands
    still.

    Initial Jacobian (restored by :meth:`reset`): Broyden must not use the
    kinematic model, so it is estimated from the babbling data by
    :meth:`fit`: an affine least-squares fit on the ``init_neighbors``
    samples nearest the trajectories' common start pose (babbling and
    servoing both start at home). Without data it is ``initial_jacobian``
    when given, else ``initial_scale * eye(m, k)``, an arbitrary full-rank
    guess that Broyden then corrects step by step.
    """

    name = "broyden"
    learned = False
    WEIGHTS_FILE = "data.npz"
    DEFAULTS = {
        "alpha": 1.0,
        "min_motion": 1e-6,
        "init_neighbors": 256,
        "initial_scale": 0.1,
        "initial_jacobian": None,
    }

    def __init__(self, task, **params):
        super().__init__(task, **params)
        if not 0.0 < float(self.params["alpha"]) <= 2.0:
            raise ValueError(f"broyden: alpha must be in (0, 2], got {self.params['alpha']}")
        init = self.params["initial_jacobian"]
        if init is not None:
            j0 = np.asarray(init, dtype=np.float64)
            if j0.shape != (self.m, self.k) or not np.isfinite(j0).all():
                raise ValueError(
                    f"broyden: initial_jacobian must be a finite ({self.m}, {self.k}) matrix, "
                    f"got shape {j0.shape}"
                )
        else:
            j0 = float(self.params["initial_scale"]) * np.eye(self.m, self.k)
        self.j0 = j0
        self.reset()

    def fit(self, qa, x, traj=None, progress=None) -> dict:
        qa, x, traj = self._check_data(qa, x, traj)
        starts = np.r_[True, traj[1:] != traj[:-1]]
        q_home = np.median(qa[starts], axis=0)
        distinct = unique_rows(qa)
        q_u, x_u = qa[distinct], x[distinct]
        count = min(int(self.params["init_neighbors"]), q_u.shape[0])
        nearest = np.argsort(np.linalg.norm(q_u - q_home, axis=1))[:count]
        self.j0 = local_linear_jacobians(q_u[nearest][None], x_u[nearest][None])[0]
        self.reset()
        val = split_by_trajectory(traj, 0.15, 0)
        report = {"val_loss": float("nan"), "home": q_home.tolist()}
        if val.any():
            report["val_loss"] = secant_loss(self, qa[val], x[val])
        return report

    def reset(self) -> None:
        self.jacobian = self.j0.copy()
        self._q_prev = None
        self._x_prev = None

    def update(self, qa, x) -> None:
        qa = self._check_qa(qa)
        x = self._check_x(x)
        if self._q_prev is not None:
            dq = qa - self._q_prev
            dq2 = float(dq @ dq)
            if dq2 < float(self.params["min_motion"]) ** 2:
                # Keep the old anchor: slow motion accumulates into a usable secant.
                return
            dx = x - self._x_prev
            resid = dx - self.jacobian @ dq
            self.jacobian += (float(self.params["alpha"]) / dq2) * np.outer(resid, dq)
        self._q_prev = qa
        self._x_prev = x

    def _estimate(self, qa):
        return self.jacobian.copy()

    def _estimate_batch(self, qa):
        return np.broadcast_to(self.jacobian, (qa.shape[0], self.m, self.k)).copy()

    def _save_weights(self, directory: Path) -> None:
        np.savez(directory / self.WEIGHTS_FILE, j0=self.j0)

    def _load_weights(self, path: Path) -> None:
        self.j0 = load_npz(path, {"j0": (self.m, self.k)})["j0"]
        self.reset()


class LocalLinearKNN(Estimator):
    """Local linear regression on the k nearest neighbours (Farahmand et al. 2007).

    J(qa) is the linear part of the affine least-squares fit x ~ J q + c on
    the ``neighbors`` (128, the paper's simulation value; 50 on the real
    Kinova) samples nearest qa in joint space (Euclidean, rad, KD-tree).
    The model is the data itself, saved as ``data.npz``.

    Latency: the exact k = 128 KD-tree query dominates one ``estimate``
    (~0.1 ms on 100,000 samples); ``leafsize`` 64 measured fastest for
    that k (16, scipy's default, is ~15 % slower). ``eps`` > 0 makes the
    query approximate (each neighbour within (1 + eps) times the true k-th
    distance), about twice as fast at eps = 0.5; 0 (default) is exact.
    """

    name = "llknn"
    learned = True
    WEIGHTS_FILE = "data.npz"
    DEFAULTS = {"neighbors": 128, "chunk": 2048, "leafsize": 64, "eps": 0.0}

    def __init__(self, task, **params):
        super().__init__(task, **params)
        if int(self.params["neighbors"]) < 2:
            raise ValueError(f"llknn: neighbors must be >= 2, got {self.params['neighbors']}")
        if int(self.params["leafsize"]) < 1:
            raise ValueError(f"llknn: leafsize must be >= 1, got {self.params['leafsize']}")
        if not float(self.params["eps"]) >= 0.0:
            raise ValueError(f"llknn: eps must be >= 0, got {self.params['eps']}")
        self.qa = None
        self.x = None
        self._tree = None

    def fit(self, qa, x, traj=None, progress=None) -> dict:
        qa, x, traj = self._check_data(qa, x, traj)
        self._set_data(qa.copy(), x.copy())
        # Scored on held-out trajectories with neighbourhoods from the rest,
        # so the number says something about unseen configurations; the
        # deployed model keeps all the data.
        val = split_by_trajectory(traj, 0.15, 0)
        report = {"val_loss": float("nan"), "samples": int(qa.shape[0])}
        if val.any() and (~val).sum() > 1:
            probe = LocalLinearKNN(self.task, **self.params)
            probe._set_data(qa[~val], x[~val])
            report["val_loss"] = secant_loss(probe, qa[val], x[val])
        return report

    def _set_data(self, qa: np.ndarray, x: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        # Distinct configurations only: k copies of home would make the
        # neighbourhood of home a single point and its Jacobian zero.
        distinct = unique_rows(qa)
        self.qa = np.ascontiguousarray(qa[distinct])
        self.x = np.ascontiguousarray(x[distinct])
        # [qa | x] side by side: one gather and one Gram product per estimate.
        self._qx = np.ascontiguousarray(np.hstack([self.qa, self.x]))
        self._tree = cKDTree(self.qa, leafsize=int(self.params["leafsize"]))
        self._kn = min(int(self.params["neighbors"]), self.qa.shape[0])
        self._eps = float(self.params["eps"])
        self._eye = np.eye(self.k)

    def _require(self):
        if self._tree is None:
            raise NotFittedError("llknn: no data; call fit() or load a model first")

    def _estimate(self, qa):
        self._require()
        _, idx = self._tree.query(qa, k=self._kn, eps=self._eps, workers=1)
        # Same algebra as local_linear_jacobians, unbatched: the centred
        # [dq | dx] block gives the Gram matrix dq^T dq and dq^T dx in one
        # (k+m)^2 product; the ridged normal equations replace lstsq.
        nb = self._qx[np.atleast_1d(idx)]
        nb -= nb.mean(axis=0)
        g = nb.T @ nb
        k = self.k
        gram = g[:k, :k]
        gram += (_RIDGE * np.trace(gram) / k + 1e-300) * self._eye
        return np.linalg.solve(gram, g[:k, k:]).T

    def _estimate_batch(self, qa):
        self._require()
        out = np.empty((qa.shape[0], self.m, self.k))
        step = int(self.params["chunk"])
        for s in range(0, qa.shape[0], step):
            _, idx = self._tree.query(qa[s:s + step], k=self._kn,
                                      eps=float(self.params["eps"]))
            idx = np.asarray(idx).reshape(-1, self._kn)
            out[s:s + step] = local_linear_jacobians(self.qa[idx], self.x[idx])
        return out

    def _save_weights(self, directory: Path) -> None:
        self._require()
        np.savez(directory / self.WEIGHTS_FILE, qa=self.qa, x=self.x)

    def _load_weights(self, path: Path) -> None:
        arrays = load_npz(path, {"qa": (None, self.k), "x": (None, self.m)})
        if arrays["qa"].shape[0] != arrays["x"].shape[0] or arrays["qa"].shape[0] < 2:
            raise ModelError(
                f"{path}: 'qa' and 'x' must hold the same number (>= 2) of samples, "
                f"got {arrays['qa'].shape[0]} and {arrays['x'].shape[0]}"
            )
        self._set_data(arrays["qa"], arrays["x"])


__all__ = [
    "Broyden",
    "LocalLinearKNN",
    "TrueJacobian",
    "local_linear_jacobians",
]
