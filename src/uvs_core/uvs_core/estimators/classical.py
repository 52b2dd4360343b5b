"""Classical Jacobian estimators (paper baselines): TJ, Broyden, LL-KNN.

None of these imports torch. Shapes: ``qa (k,)`` rad, ``x (m,)`` task units,
``J (m, k)`` task units per rad.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from uvs_core.estimators import _native
from uvs_core.estimators.base import (
    Estimator,
    ModelError,
    NotFittedError,
    load_npz,
    secant_loss,
    split_by_trajectory,
    unique_rows,
)
from uvs_core.tasks import Task, error_fn

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


def _kdtree_class():
    """pykdtree's KDTree, its queries on one OpenMP thread whatever else is loaded.

    pykdtree runs every query in an OpenMP parallel region. For the single
    configuration of an estimate a second thread gains nothing, and after
    each query it busy-waits on the other core (measured: process CPU time
    2.0x wall time on a 2-core machine, 1.0x with one thread), taking that
    core from the ROS executor and the other nodes. Its query has no thread
    argument, so its module is loaded here with its own libgomp (a private
    copy in the wheel) set to one thread: OMP_NUM_THREADS=1 while that copy
    reads it, at load, then restored; and RTLD_DEEPBIND, so the module uses
    that copy even when torch has put its own libgomp (with its own thread
    count, which stays as it is) in the global symbol scope first.
    """
    module = sys.modules.get("pykdtree.kdtree")
    if module is None:
        saved_env = os.environ.get("OMP_NUM_THREADS")
        saved_flags = sys.getdlopenflags() if hasattr(sys, "setdlopenflags") else None
        os.environ["OMP_NUM_THREADS"] = "1"
        if saved_flags is not None:
            sys.setdlopenflags(os.RTLD_NOW | os.RTLD_LOCAL | getattr(os, "RTLD_DEEPBIND", 0))
        try:
            from pykdtree import kdtree as module
        finally:
            if saved_flags is not None:
                sys.setdlopenflags(saved_flags)
            if saved_env is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = saved_env
    return module.KDTree


def _ridged_solve(g: np.ndarray, k: int, dposv) -> np.ndarray:
    """J (m, k) from the centred Gram matrix g (k+m, k+m) of one neighbourhood's [dq | dx].

    local_linear_jacobians for a single neighbourhood: the same ridge on the
    dq^T dq block (modified in place), solved by Cholesky (LAPACK dposv; the
    ridged block is symmetric positive definite) instead of LU, which is
    cheaper and skips np.linalg.solve's wrapper. Falls back to LU should
    Cholesky fail. ``dposv``: scipy.linalg.lapack.dposv, imported by the caller.
    """
    size = g.shape[0]
    diag = g.reshape(-1)[:k * (size + 1):size + 1]  # view of the dq^T dq diagonal
    diag += _RIDGE * diag.sum() / k + 1e-300
    _, sol, info = dposv(g[:k, :k], g[:k, k:])
    if info != 0:
        sol = np.linalg.solve(g[:k, :k], g[:k, k:])
    return sol.T


class TrueJacobian(Estimator):
    """The analytic Jacobian of the task model (the paper's TJ reference).

    Needs no data; ``task.jacobian(qa)`` in task units per rad.
    """

    name = "tj"
    learned = False

    def __init__(self, task, **params):
        super().__init__(task, **params)
        self._expand_here = isinstance(task, Task)
        # Every joint active, in order: the expansion of qa is qa itself.
        self._all_active = self._expand_here and np.array_equal(
            np.asarray(task.active), np.arange(task.robot.n))

    def _estimate(self, qa):
        if not self._expand_here:
            return np.asarray(self.task.jacobian(qa), dtype=np.float64)
        # task.jacobian(qa) with Task.expand done here for one configuration:
        # the same q, so the same J, without expand's broadcasting, which
        # costs more than the rest of it (this runs on every request).
        if self._all_active:
            q = qa
        else:
            q = self.task.q_fixed.copy()
            q[self.task.active] = qa
        return np.asarray(self.task.jacobian_from_q(q), dtype=np.float64)

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
        from uvs_core.tasks import error_fn

        self._error = error_fn(self.task)
        self.jacobian = self.j0.copy()
        self._q_prev = None
        self._x_prev = None

    def update(self, qa, x) -> None:
        qa = self._check_qa(qa)
        x = self._check_x(x)
        if self._q_prev is not None:
            dq = qa - self._q_prev
            # ndarray.dot: the BLAS products of ``@`` without the matmul
            # ufunc's overhead (this runs on every request to the service).
            dq2 = float(dq.dot(dq))
            if dq2 < float(self.params["min_motion"]) ** 2:
                # Keep the old anchor: slow motion accumulates into a usable secant.
                return
            # The task's error from the previous x (x - x_prev but for pose, whose
            # orientation part is the log map: a geometric J, no jump at the wrap).
            dx = x - self._x_prev if self._error is None else self._error(self._x_prev, x)
            resid = dx - self.jacobian.dot(dq)
            # (alpha / dq2) * np.outer(resid, dq): the same products, without
            # np.outer's wrapper.
            step = resid[:, None] * dq
            step *= float(self.params["alpha"]) / dq2
            self.jacobian += step
        self._q_prev = qa
        self._x_prev = x

    def with_params(self, **changes) -> Broyden:
        """A fresh Broyden with this one's first Jacobian (fitted or given) and its
        parameters but ``changes`` (alpha, min_motion); ValueError for a bad value."""
        params = {**dict(self.params), "initial_jacobian": self.j0, **changes}
        return type(self)(self.task, **params)

    def batch_view(self, batch: int):
        """B independent Broyden states starting from this one's initial J
        (uvs_core.evaluation.BatchedBroyden, the same update vectorised)."""
        from uvs_core.evaluation import BatchedBroyden

        return BatchedBroyden.from_estimator(self, batch)

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
    Kinova) samples nearest qa in joint space (Euclidean, rad). The model is
    the data itself, saved as ``data.npz``.

    ``backend`` chooses how the neighbours are found; the neighbours, and so
    J, are the same (to rounding) either way:

    - ``"native"``: ``_llknn.c``, built with the package (an optional
      extension; see ``_native.py``): the samples grouped into blocks of at
      most ``native_block`` and leaves of at most ``native_leaf`` samples,
      each with its bounding box, the query and the fit in one call;
    - ``"kdtree"``: pykdtree's KD-tree (``leafsize``) on one thread (see
      ``_kdtree_class``) and the fit in numpy;
    - ``"auto"`` (default): native when it was built, else kdtree.

    Latency, Gen3 single_point, 100,000 babbled samples, configurations
    drawn uniformly within the limits, 2-core machine (``python
    benchmarks/estimator_latency.py --estimators llknn --no-service``): one
    ``estimate`` takes ~40 us median, ~90-95 us p99 native; ~92 us median and
    185-200 us p99 with the kdtree backend. A KD-tree's k = 128 query in 7
    dimensions walks ~800-1,400 nodes scattered over ~6 MB, a cache miss
    each; the native index bounds all ~1,000 blocks in one linear pass,
    visits them nearest first, and scans only the leaves whose box is nearer
    than the current k-th neighbour (~60 blocks, ~600-1,300 samples a query).
    ``eps`` > 0 makes the query approximate (each neighbour within (1 + eps)
    times the true k-th distance); 0 (default) is exact.
    """

    name = "llknn"
    learned = True
    WEIGHTS_FILE = "data.npz"
    BACKENDS = ("auto", "native", "kdtree")
    DEFAULTS = {"neighbors": 128, "chunk": 2048, "leafsize": 64, "eps": 0.0,
                "backend": "auto", "native_block": 256, "native_leaf": 16}

    def __init__(self, task, **params):
        super().__init__(task, **params)
        p = self.params
        if int(p["neighbors"]) < 2:
            raise ValueError(f"llknn: neighbors must be >= 2, got {p['neighbors']}")
        if int(p["leafsize"]) < 1:
            raise ValueError(f"llknn: leafsize must be >= 1, got {p['leafsize']}")
        if not float(p["eps"]) >= 0.0:
            raise ValueError(f"llknn: eps must be >= 0, got {p['eps']}")
        if p["backend"] not in self.BACKENDS:
            raise ValueError(f"llknn: backend must be one of {', '.join(self.BACKENDS)}, "
                             f"got {p['backend']!r}")
        if not 1 <= int(p["native_leaf"]) <= int(p["native_block"]):
            raise ValueError(f"llknn: need 1 <= native_leaf <= native_block, got "
                             f"{p['native_leaf']} and {p['native_block']}")
        if p["backend"] == "native" and not _native.available():
            raise ValueError("llknn: backend 'native' asked for, but uvs_core's native "
                             "library was not built (see _native.library_path); "
                             "use backend 'kdtree' or 'auto'")
        self.backend = ("native" if p["backend"] == "auto" and _native.available()
                        else "kdtree" if p["backend"] == "auto" else p["backend"])
        self.qa = None
        self.x = None
        self._tree = None
        self._native = None
        # pose: neighbourhoods fitted on the task's error from one of them (log map), so J
        # is the geometric one and a neighbourhood across the rotation vector's wrap at pi
        # is right; other tasks: the centred [dq | dx] fit below (x - mean).
        self._error = error_fn(task)

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
        from scipy.linalg.lapack import dposv

        # Distinct configurations only: k copies of home would make the
        # neighbourhood of home a single point and its Jacobian zero.
        distinct = unique_rows(qa)
        self.qa = np.ascontiguousarray(qa[distinct])
        self.x = np.ascontiguousarray(x[distinct])
        self._kn = min(int(self.params["neighbors"]), self.qa.shape[0])
        self._eps = float(self.params["eps"])
        self._dposv = dposv
        if self.backend == "native":
            self._native = _native.NativeLocalLinear(
                self.qa, self.x, self._kn, eps=self._eps, ridge=_RIDGE,
                block_size=int(self.params["native_block"]),
                leaf_size=int(self.params["native_leaf"]))
            return
        from scipy.spatial import cKDTree

        leafsize = int(self.params["leafsize"])
        # The tree and the [qa | x] rows (one gather and one Gram product per
        # estimate) hold the samples in the leaf order of a sliding-midpoint
        # KD-tree (pykdtree's split rule), so neighbours sit together in
        # memory. The neighbours found, and so J, do not depend on the order.
        order = cKDTree(self.qa, leafsize=leafsize, balanced_tree=False,
                        compact_nodes=False).indices
        self._order = order
        self._qx = np.ascontiguousarray(np.hstack([self.qa, self.x])[order])
        self._tree = _kdtree_class()(np.ascontiguousarray(self._qx[:, :self.k]),
                                     leafsize=leafsize)
        self._mean_weights = np.full(self._kn, 1.0 / self._kn)

    def _require(self):
        if self._tree is None and self._native is None:
            raise NotFittedError("llknn: no data; call fit() or load a model first")

    def neighbours(self, qa) -> np.ndarray:
        """Rows of the fitted samples (``self.qa``, ``self.x``) nearest qa (k,), unordered."""
        self._require()
        qa = self._check_qa(qa)
        if self._native is not None:
            return self._native.neighbours(qa)
        _, idx = self._tree.query(qa[None], k=self._kn, eps=self._eps, sqr_dists=True)
        return self._order[idx.reshape(-1)]

    def _fit_rows(self, rows: np.ndarray) -> np.ndarray:
        """J (m, k) from the samples ``rows`` (numpy; the native path's fallback)."""
        nb = np.hstack([self.qa[rows], self.x[rows]])
        nb -= nb.mean(axis=0)
        return _ridged_solve(nb.T @ nb, self.k, self._dposv)

    def _fit_error(self, qa: np.ndarray) -> np.ndarray:
        """J (B, m, k) at qa (B, k) from each neighbourhood's task errors e(x_0, x_i)."""
        rows = np.stack([self.neighbours(q) for q in qa])          # (B, K)
        x_nb = self.x[rows]
        dx = self._error(x_nb[:, :1, :], x_nb)                      # (B, K, m)
        return local_linear_jacobians(self.qa[rows], dx)

    def _estimate(self, qa):
        self._require()
        if self._error is not None:
            return self._fit_error(qa[None])[0]
        if self._native is not None:
            jac = self._native.estimate(qa)
            # None: Cholesky failed in C (a degenerate neighbourhood); numpy's
            # solve takes over on the same neighbours.
            return jac if jac is not None else self._fit_rows(self._native.neighbours())
        _, idx = self._tree.query(qa[None], k=self._kn, eps=self._eps, sqr_dists=True)
        # Same algebra as local_linear_jacobians, unbatched: the centred
        # [dq | dx] block gives the Gram matrix dq^T dq and dq^T dx in one
        # (k+m)^2 product (the mean as one product too: fewer numpy calls).
        nb = self._qx.take(idx.reshape(-1), axis=0)
        nb -= self._mean_weights @ nb
        return _ridged_solve(nb.T @ nb, self.k, self._dposv)

    def _estimate_batch(self, qa):
        self._require()
        if self._error is not None:
            return self._fit_error(qa) if qa.shape[0] else np.zeros((0, self.m, self.k))
        if self._native is not None:
            out, status = self._native.estimate_batch(qa)
            for i in np.flatnonzero(status):
                out[i] = self._fit_rows(self._native.neighbours(qa[i]))
            return out
        out = np.empty((qa.shape[0], self.m, self.k))
        step = int(self.params["chunk"])
        k = self.k
        for s in range(0, qa.shape[0], step):
            _, idx = self._tree.query(qa[s:s + step], k=self._kn, eps=self._eps,
                                      sqr_dists=True)
            nb = self._qx[idx.reshape(-1, self._kn)]
            out[s:s + step] = local_linear_jacobians(nb[..., :k], nb[..., k:])
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
