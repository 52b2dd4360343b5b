"""linear_ls: one Jacobian for the whole workspace, the least-squares fit of
x ~ J qa + c over the babbling data.

Shapes: qa (k,) rad, x (m,) task units, J (m, k) task units per rad.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uvs_core.estimators import Estimator, NotFittedError
from uvs_core.estimators.base import load_npz


class LinearLeastSquares(Estimator):
    """J = the least-squares slope of x over qa, with a ridge term ``ridge``."""

    name = "linear_ls"          # the entry point's name
    learned = True              # as its spec declares
    DEFAULTS = {"ridge": 1e-6}  # every accepted parameter, with its default
    WEIGHTS_FILE = "linear.npz"

    def __init__(self, task, **params):
        super().__init__(task, **params)
        self.jacobian: np.ndarray | None = None

    def fit(self, qa, x, traj=None, progress=None) -> dict:
        """qa (N, k) rad, x (N, m): solve min ||[qa 1] W - x||^2 + ridge ||W||^2."""
        qa, x, traj = self._check_data(qa, x, traj)
        a = np.hstack([qa, np.ones((qa.shape[0], 1))])
        w = np.linalg.solve(a.T @ a + float(self.params["ridge"]) * np.eye(a.shape[1]), a.T @ x)
        self.jacobian = np.ascontiguousarray(w[:-1].T)  # (m, k)
        residual = a @ w - x
        return {"val_loss": float(np.mean(residual * residual))}

    def _fitted(self) -> np.ndarray:
        if self.jacobian is None:
            raise NotFittedError("linear_ls: fit() or load() first")
        return self.jacobian

    def _estimate(self, qa):
        return self._fitted().copy()

    def _estimate_batch(self, qa):
        return np.broadcast_to(self._fitted(), (qa.shape[0], self.m, self.k)).copy()

    def _save_weights(self, directory: Path) -> None:
        np.savez(directory / self.WEIGHTS_FILE, J=self._fitted())

    def _load_weights(self, path: Path) -> None:
        # load_npz checks the shape and raises ModelError naming the file
        self.jacobian = load_npz(path, {"J": (self.m, self.k)})["J"]
