"""NK-ensemble: K Tanh-NK networks; J = their mean, u = how much they disagree.

K members (``members``, default 5) are trained exactly as ``nk_tanh``
(:mod:`uvs_learning.neural_kinematics`) with seeds ``seed, seed + 1, ...``:
they differ in initialisation, batch order and held-out trajectories (each
member's 15 % validation split follows its seed) and, with ``bootstrap``
true, in a resample of the training trajectories drawn with replacement (a
deep ensemble by default, bootstrap off: Lakshminarayanan et al. 2017 found
random initialisation alone gives the better-calibrated spread).

At qa (k,) rad, with J_i (m, k) the members' input Jacobians (task units per rad)::

    J_hat = mean_i J_i
    u     = sqrt(mean_i ||J_i - J_hat||_F^2) / max(||J_hat||_F, tiny)

u is dimensionless: the members' RMS deviation from their mean relative to
the mean's size (0.1 = the members disagree by 10 % of |J|), so one threshold
means the same in m/rad and px/rad. Far from the babbling data the members
extrapolate differently and u grows; that is what the controller's
``uncertainty_slowdown`` / ``uncertainty_halt`` act on.

Estimators without a notion of uncertainty report u = NaN
(:meth:`uvs_core.estimators.base.Estimator.estimate_with_uncertainty`).

Model directory: ``metadata.json`` (``members``, ``member_seeds``, each
member's validation loss and Jacobian error) and one ``model.pt`` holding
every member's state dict under the prefix ``member<i>.``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uvs_core.estimators.base import Estimator, ModelError, NotFittedError
from uvs_learning.mlp import numpy_input_jacobian, read_state_dict
from uvs_learning.neural_kinematics import NeuralKinematicsTanh

#: parameters of the ensemble itself (the rest are nk_tanh's, for every member)
ENSEMBLE_DEFAULTS = {"members": 5, "bootstrap": False}
_TINY = 1e-12


def ensemble_stats(jacs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and relative spread of member Jacobians.

    jacs: (K, ..., m, k), K >= 1. Returns (J_hat (..., m, k), u (...,)), u as in
    the module docstring (dimensionless; 0 when K = 1).
    """
    mean = jacs.mean(axis=0)
    dev = jacs - mean[None]
    spread = np.sqrt(np.mean(np.sum(dev * dev, axis=(-2, -1)), axis=0))
    size = np.sqrt(np.sum(mean * mean, axis=(-2, -1)))
    return mean, spread / np.maximum(size, _TINY)


def _bootstrap(qa, x, traj, seed: int):
    """Trajectories drawn with replacement, renumbered so copies stay distinct
    trajectories (consecutive rows, as the secant pairs need)."""
    ids = np.unique(traj)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, size=ids.size, replace=True)
    rows = [np.flatnonzero(traj == t) for t in chosen]
    index = np.concatenate(rows)
    new_traj = np.concatenate([np.full(r.size, i) for i, r in enumerate(rows)])
    return qa[index], x[index], new_traj


class NeuralKinematicsEnsemble(Estimator):
    """nk_ens: K nk_tanh members, J = mean, u = relative spread; see the module docstring.

    Parameters: nk_tanh's (every member's), ``members`` K >= 2, ``bootstrap``
    (bool). Shapes: qa (k,) rad, J (m, k) task units per rad, u dimensionless.
    """

    name = "nk_ens"
    learned = True
    has_uncertainty = True
    WEIGHTS_FILE = "model.pt"
    DEFAULTS = {**NeuralKinematicsTanh.DEFAULTS, **ENSEMBLE_DEFAULTS}
    TASK_DEFAULTS = NeuralKinematicsTanh.TASK_DEFAULTS

    def __init__(self, task, **params):
        super().__init__(task, **params)
        if int(self.params["members"]) < 2:
            raise ValueError(f"nk_ens: members must be >= 2, got {self.params['members']}")
        # Validates the members' parameters now, not at fit time.
        self._members = [NeuralKinematicsTanh(task, **self._member_params(i))
                         for i in range(int(self.params["members"]))]
        self._ready = False

    def _member_params(self, i: int) -> dict:
        params = {k: v for k, v in self.params.items() if k not in ENSEMBLE_DEFAULTS}
        params["seed"] = int(self.params["seed"]) + i
        return params

    @property
    def members(self) -> list[NeuralKinematicsTanh]:
        return list(self._members)

    # ---------------------------------------------------------------- training
    def fit(self, qa, x, traj=None, progress=None) -> dict:
        qa, x, traj = self._check_data(qa, x, traj)
        count = len(self._members)
        epochs = int(self.params["epochs"])
        reports = []
        for i, member in enumerate(self._members):
            data = (qa, x, traj)
            if self.params["bootstrap"]:
                data = _bootstrap(qa, x, traj, int(self.params["seed"]) + 1000 + i)

            def member_progress(epoch, _epochs, train, val, i=i):
                # One bar over all members: epochs count up to K * epochs.
                if progress is not None:
                    progress(i * epochs + epoch, count * epochs, train, val)

            reports.append(member.fit(*data, progress=member_progress))
        self._ready = True
        val = [float(r["val_loss"]) for r in reports]
        self.info["member_seeds"] = [int(m.params["seed"]) for m in self._members]
        self.info["member_val_loss"] = val
        history = [h for r in reports for h in r.get("history", [])]
        return {"val_loss": float(np.mean(val)),
                "train_loss": float(np.mean([r["train_loss"] for r in reports])),
                "epochs_run": int(sum(r["epochs_run"] for r in reports)),
                "best_epoch": int(reports[-1]["best_epoch"]),
                "history": history}

    # --------------------------------------------------------------- inference
    def _require(self) -> None:
        if not self._ready:
            raise NotFittedError("nk_ens: not trained; call fit() or load a model first")

    def member_jacobians(self, qa: np.ndarray) -> np.ndarray:
        """Every member's J: qa (B, k) rad -> (K, B, m, k), task units per rad."""
        self._require()
        return np.stack([
            numpy_input_jacobian(m._layers, m.params["activation"], qa)[1]
            for m in self._members])

    def _estimate(self, qa):
        return ensemble_stats(self.member_jacobians(qa[None]))[0][0]

    def _estimate_batch(self, qa):
        return ensemble_stats(self.member_jacobians(qa))[0]

    def estimate_with_uncertainty(self, qa, x=None) -> tuple[np.ndarray, float]:
        """(J_hat (m, k), u) at qa (k,) rad; u dimensionless (module docstring)."""
        jac, u = ensemble_stats(self.member_jacobians(self._check_qa(qa)[None]))
        return jac[0], float(u[0])

    def estimate_batch_with_uncertainty(self, qa, x=None) -> tuple[np.ndarray, np.ndarray]:
        """(J_hat (B, m, k), u (B,)) at qa (B, k) rad."""
        return ensemble_stats(self.member_jacobians(self._check_qa_batch(qa)))

    # ------------------------------------------------------------- persistence
    def _save_weights(self, directory: Path) -> None:
        state = {}
        for i, member in enumerate(self._members):
            state.update({f"member{i}.{k}": v for k, v in member.state_dict().items()})
        torch.save(state, directory / self.WEIGHTS_FILE)

    def _load_weights(self, path: Path) -> None:
        state = read_state_dict(path)
        for i, member in enumerate(self._members):
            prefix = f"member{i}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                raise ModelError(f"{path}: no weights for member {i} of "
                                 f"{len(self._members)} (metadata 'members')")
            member.load_state_dict(sub, source=f"{path} (member {i})")
        self._ready = True
