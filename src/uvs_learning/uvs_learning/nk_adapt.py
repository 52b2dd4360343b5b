"""NK-adapt: a learned Tanh-NK prior corrected online from the servo's own (q, x) stream.

The prior is a Tanh-NK network x ~ f(qa) (:mod:`uvs_learning.neural_kinematics`,
trained exactly as ``nk_tanh``). While servoing, each new sample (qa, x)
gives a secant of the prior's error e(q) = x - f(q)::

    de = (x - x_prev) - (f(q) - f(q_prev))      # (m,) what the prior mispredicted
    dq = q - q_prev                             # (k,) rad

and a residual Jacobian D (m, k), zero at the start of every target, is
corrected from it. The estimate is

    J(q) = J_NK(q) + D                          # (m, k), task units per rad

so far from the data, where the prior's derivative is wrong, D learns the
difference along the way; near it D stays small. Using the prior's own
displacement f(q) - f(q_prev) (not J_NK dq) keeps the prior's curvature out
of the residual. ``method`` selects the correction:

- ``broyden`` (default): D <- rho D, then the rank-1 secant update
  D <- D + alpha r dq^T / (dq^T dq), r = de - D dq; ``forgetting`` = 1 - rho
  pulls D back toward 0 (toward the prior) each step it moves.
- ``rls``: recursive least squares of de = D dq with exponential forgetting
  ``rls_lambda`` (shared k x k covariance for the m rows, started at
  ``rls_p0`` I, the prior's weight: small p0 trusts the prior longer).
- ``none``: no correction (D stays 0), the ablation: the prior with the rank
  projection below.

``project_rank`` (default true): J is replaced by its best approximation of
the task's rank (uvs_core.control.task_rank: min(m, k, 6), the tool pose's 6
degrees of freedom), i.e. its smallest singular values are zeroed where
m, k > 6. The true 12 x 7 multi-point Jacobian has rank 6; a corrected J
comes close to it but keeps a tiny 7th singular value, whose inverse in the
paper's plain pseudo-inverse controller dominates the command (the arm then
stalls against the clipped, masked joints). Single point (3 x 7) and visual
servo (2 x 2) are unaffected.

Steps with |dq| < ``min_motion`` rad carry no direction and are skipped (the
previous sample stays the anchor). Nothing is persisted: :meth:`reset` (one
per target, as for Broyden) returns to the prior; the model directory holds
the prior only.

Model directory: a full one (``model.pt`` + metadata, what ``uvs train
--estimator nk_adapt`` writes: it trains the prior as nk_tanh would), or a
tiny one whose metadata names the nk_tanh model it adapts,
``"prior": "../nk_tanh"`` (relative to the directory, or absolute), as
shipped in ``models/<task>/nk_adapt`` and as ``uvs benchmark`` writes it when
the run trains nk_tanh with the same recipe (:meth:`NeuralKinematicsAdapt.
save_reference`, ``uvs_learning.training.adapt_from_prior``); the prior's
metadata is checked against the task like any model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uvs_core.estimators.base import (
    METADATA_FILE,
    ModelError,
    check_metadata,
    read_metadata,
    write_model_dir,
)
from uvs_learning.mlp import numpy_input_jacobian
from uvs_learning.neural_kinematics import NeuralKinematicsTanh

METHODS = ("broyden", "rls", "none")

#: parameters of the online correction (the rest are nk_tanh's, for the prior)
ADAPT_DEFAULTS = {
    "method": "broyden",
    # 0.5 over the classic 1: 86.9 against 85.9 multi point, 95.2 against 95.1 single
    # point (docs/benchmarks.md, "Beyond the paper")
    "alpha": 0.5,
    "forgetting": 0.0,
    "rls_lambda": 0.95,
    "rls_p0": 10.0,
    "min_motion": 1e-6,
    "project_rank": True,
}


class BatchedAdaptation:
    """B independent online corrections of one NK prior, stepped together.

    layers, activation: the prior's folded numpy weights (raw qa -> raw x).
    update(qa (B, k) rad, x (B, m)) applies one secant step per trajectory;
    estimate_batch(qa (B, k)) -> (B, m, k) = J_NK(qa) + D. The single
    estimator (:class:`NeuralKinematicsAdapt`) is this with B = 1, so the
    batched benchmark rollout and the live service compute the same numbers.
    """

    def __init__(self, layers, activation: str, m: int, k: int, batch: int,
                 params: dict, rank: int | None = None) -> None:
        self.layers = layers
        self.activation = activation
        self.m, self.k, self.batch = int(m), int(k), int(batch)
        self.method = params["method"]
        self.alpha = float(params["alpha"])
        self.rho = 1.0 - float(params["forgetting"])
        self.lam = float(params["rls_lambda"])
        self.p0 = float(params["rls_p0"])
        self.min_motion = float(params["min_motion"])
        #: singular values kept in the estimate (None: all)
        self.rank = rank if rank is not None and rank < min(self.m, self.k) else None
        self._cache_q: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Every trajectory back to the prior: D = 0, P = p0 I, no previous sample."""
        b, m, k = self.batch, self.m, self.k
        self.residual = np.zeros((b, m, k))
        self.cov = np.broadcast_to(self.p0 * np.eye(k), (b, k, k)).copy()
        self._q_prev = np.zeros((b, k))
        self._e_prev = np.zeros((b, m))
        self._has_prev = np.zeros(b, dtype=bool)

    def prior(self, qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(f(qa) (B, m), J_NK(qa) (B, m, k)); the last call's result is reused for the same qa."""
        if self._cache_q is not None and self._cache_q.shape == qa.shape \
                and np.array_equal(self._cache_q, qa):
            return self._cache_y, self._cache_j
        y, jac = numpy_input_jacobian(self.layers, self.activation, qa)
        self._cache_q, self._cache_y, self._cache_j = qa.copy(), y, jac
        return y, jac

    def update(self, qa: np.ndarray, x: np.ndarray) -> None:
        """One secant step per trajectory from qa (B, k) rad and x (B, m)."""
        qa = np.asarray(qa, dtype=float)
        x = np.asarray(x, dtype=float)
        y, _ = self.prior(qa)
        err = x - y                                     # (B, m) prior's error e(q)
        dq = qa - self._q_prev
        dq2 = np.einsum("bk,bk->b", dq, dq)
        moved = self._has_prev & (dq2 >= self.min_motion ** 2)
        if moved.any() and self.method != "none":
            d = dq[moved]                               # (M, k)
            de = err[moved] - self._e_prev[moved]       # (M, m)
            res = self.residual[moved]
            if self.method == "broyden":
                res = self.rho * res
                r = de - np.einsum("bmk,bk->bm", res, d)
                res = res + (self.alpha / dq2[moved])[:, None, None] * (
                    r[:, :, None] * d[:, None, :])
            else:
                p = self.cov[moved]
                pd = np.einsum("bij,bj->bi", p, d)      # (M, k)
                gain = pd / (self.lam + np.einsum("bk,bk->b", d, pd))[:, None]
                r = de - np.einsum("bmk,bk->bm", res, d)
                res = res + r[:, :, None] * gain[:, None, :]
                p = (p - gain[:, :, None] * pd[:, None, :]) / self.lam
                # Symmetrise, and bound P so long still stretches cannot blow it up.
                p = 0.5 * (p + np.swapaxes(p, 1, 2))
                trace = np.trace(p, axis1=1, axis2=2)
                cap = self.p0 * self.k
                over = trace > cap
                if over.any():
                    p[over] *= (cap / trace[over])[:, None, None]
                self.cov[moved] = p
            self.residual[moved] = res
        anchor = ~self._has_prev | moved
        self._q_prev[anchor] = qa[anchor]
        self._e_prev[anchor] = err[anchor]
        self._has_prev |= anchor

    def estimate_batch(self, qa: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """qa (B, k) rad -> (B, m, k), J_NK(qa) + D, projected to ``rank``."""
        _, jac = self.prior(np.asarray(qa, dtype=float))
        return self.project(jac + self.residual)

    def project(self, jac: np.ndarray) -> np.ndarray:
        """(B, m, k) -> the nearest matrices of rank ``self.rank`` (Frobenius; unchanged
        when rank is None)."""
        if self.rank is None:
            return jac
        u, s, vt = np.linalg.svd(jac, full_matrices=False)
        r = self.rank
        return (u[:, :, :r] * s[:, None, :r]) @ vt[:, :r, :]


class NeuralKinematicsAdapt(NeuralKinematicsTanh):
    """nk_adapt: a Tanh-NK prior plus an online residual correction; see the module docstring.

    Parameters: nk_tanh's (they train the prior) and ``method`` (broyden |
    rls), ``alpha`` (0, 2], ``forgetting`` [0, 1), ``rls_lambda`` (0, 1],
    ``rls_p0`` > 0, ``min_motion`` >= 0 rad, ``project_rank`` (bool).
    Shapes: qa (k,) rad, x (m,), J (m, k) task units per rad.
    """

    name = "nk_adapt"
    DEFAULTS = {**NeuralKinematicsTanh.DEFAULTS, **ADAPT_DEFAULTS}
    TASK_DEFAULTS = NeuralKinematicsTanh.TASK_DEFAULTS

    def __init__(self, task, **params):
        if getattr(task, "nk_features", None) is not None:
            raise ValueError(f"nk_adapt: task {task.name!r} is not supported (its network "
                             f"learns features of x, which the adaptation does not map); "
                             f"use nk_tanh")
        super().__init__(task, **params)
        p = self.params
        if p["method"] not in METHODS:
            raise ValueError(f"nk_adapt: method must be one of {METHODS}, got {p['method']!r}")
        if not 0.0 < float(p["alpha"]) <= 2.0:
            raise ValueError(f"nk_adapt: alpha must be in (0, 2], got {p['alpha']}")
        if not 0.0 <= float(p["forgetting"]) < 1.0:
            raise ValueError(f"nk_adapt: forgetting must be in [0, 1), got {p['forgetting']}")
        if not 0.0 < float(p["rls_lambda"]) <= 1.0:
            raise ValueError(f"nk_adapt: rls_lambda must be in (0, 1], got {p['rls_lambda']}")
        if not float(p["rls_p0"]) > 0.0:
            raise ValueError(f"nk_adapt: rls_p0 must be > 0, got {p['rls_p0']}")
        if not float(p["min_motion"]) >= 0.0:
            raise ValueError(f"nk_adapt: min_motion must be >= 0, got {p['min_motion']}")
        self._state: BatchedAdaptation | None = None

    # ------------------------------------------------------------ the prior
    def _extract(self) -> None:
        super()._extract()
        self._state = self.batch_view(1)

    def batch_view(self, batch: int) -> BatchedAdaptation:
        """B independent corrections of this prior, all at D = 0 (uvs_core.evaluation.batched)."""
        self._require()
        from uvs_core.control import task_rank

        rank = task_rank(self.task) if self.params["project_rank"] else None
        return BatchedAdaptation(self._layers, self.params["activation"], self.m, self.k,
                                 batch, self.params, rank=rank)

    # --------------------------------------------------------------- online
    def reset(self) -> None:
        if self._state is not None:
            self._state.reset()

    def update(self, qa, x) -> None:
        qa = self._check_qa(qa)
        x = self._check_x(x)
        self._require()
        self._state.update(qa[None], x[None])

    @property
    def residual(self) -> np.ndarray:
        """The current correction D: (m, k), task units per rad (zeros after reset)."""
        self._require()
        return self._state.residual[0].copy()

    def _estimate(self, qa):
        self._require()
        return self._state.estimate_batch(qa[None])[0]

    def _estimate_batch(self, qa):
        # Many configurations at once, one correction: the current D added to each.
        self._require()
        return self._state.project(self._np_jacobian(qa) + self._state.residual[0])

    # ---------------------------------------------------------- persistence
    def metadata(self) -> dict:
        # save() writes the prior's weights here: the directory stands alone.
        meta = super().metadata()
        meta.pop("prior", None)
        return meta

    @classmethod
    def load(cls, path, task) -> NeuralKinematicsAdapt:
        """A full model directory, or a tiny one whose metadata ``prior`` names an
        nk_tanh model (relative to ``path`` or absolute); ModelError naming the file."""
        path = Path(path)
        meta = read_metadata(path)
        prior = meta.get("prior")
        if prior is None:
            return super().load(path, task)
        check_metadata(meta, path, task=task, name=cls.name)
        if not isinstance(prior, str) or not prior:
            raise ModelError(f"{path / METADATA_FILE}: field 'prior' must be a path, "
                             f"found {prior!r}")
        prior_path = Path(prior) if Path(prior).is_absolute() else path / prior
        online = {k: v for k, v in meta.get("params", {}).items() if k in ADAPT_DEFAULTS}
        return cls.from_prior(prior_path, task, params_source=path / METADATA_FILE,
                              **online)

    @classmethod
    def from_prior(cls, prior_path, task, params_source=None,
                   **online) -> NeuralKinematicsAdapt:
        """This estimator over the nk_tanh model directory ``prior_path``: the prior's
        weights and training parameters, ``online`` (keys of ADAPT_DEFAULTS) for the
        correction. ModelError naming the file (``params_source`` for bad ``online``
        values, default the prior's metadata)."""
        prior_path = Path(prior_path)
        prior_meta = read_metadata(prior_path)
        check_metadata(prior_meta, prior_path, task=task, name=NeuralKinematicsTanh.name)
        # The prior's training parameters, the caller's online ones.
        params = {k: v for k, v in prior_meta.get("params", {}).items()
                  if k not in ADAPT_DEFAULTS}
        params.update(online)
        try:
            est = cls(task, **params)
        except (TypeError, ValueError) as exc:
            source = params_source or prior_path / METADATA_FILE
            raise ModelError(f"{source}: bad 'params': {exc}") from None
        est.info = {"prior_source": str(prior_path.resolve())}
        for key in ("data_hash", "samples", "jacobian_frobenius_mean",
                    "jacobian_frobenius_median"):
            if key in prior_meta:
                est.info[f"prior_{key}"] = prior_meta[key]
        weights = prior_path / (prior_meta.get("weights") or cls.WEIGHTS_FILE)
        if not weights.is_file():
            raise ModelError(f"{weights}: weights file of the prior missing")
        est._load_weights(weights)
        return est

    def save_reference(self, path) -> Path:
        """Write ``path`` as a tiny model directory: metadata only, its ``prior`` the
        path of ``info["prior_source"]`` relative to ``path`` and its ``params`` the
        online ones (as shipped in ``models/<task>/nk_adapt``), so the prior's weights
        are not copied; what :meth:`load` reads back. ModelError when this estimator
        was not made from a prior directory (:meth:`from_prior`)."""
        import os

        source = self.info.get("prior_source")
        if not source:
            raise ModelError(f"{self.name}: no prior directory to refer to; use save()")
        path = Path(path)
        meta = super().metadata()
        meta.update({
            "params": {k: self.params[k] for k in ADAPT_DEFAULTS},
            "prior": os.path.relpath(source, path.resolve()),
            "weights": None,
        })
        meta.pop("prior_source", None)
        return write_model_dir(path, meta, lambda directory: None)
