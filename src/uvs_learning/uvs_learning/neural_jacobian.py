"""Neural Jacobian and Bi-directional Neural Jacobian (paper III-A, Eq. 2).

An MLP maps qa (k,) to the m*k entries of J directly. It is trained on
finite-difference pairs: each training sample i with its ``pairs`` (10)
nearest neighbours j in joint space (same split), precomputed once with a
KD-tree, dq_ij = q_j - q_i, dx_ij = x_j - x_i, minimising

    mean ||dx_ij - J(q_i) dq_ij||^2 + beta ||dq_ij - J(q_i)^+ dx_ij||^2

with beta = 0 (NJ) or 1 (Bi-NJ). Both terms are computed in normalised
units (q and x divided by their training std, then both deltas by one
common scalar, the RMS pair distance, which leaves J unchanged and keeps
the loss O(1) for Adam). J in physical units is
diag(x_std) J_n diag(1 / q_std); that scaling is folded into the output
layer for numpy inference.
"""

from __future__ import annotations

import numpy as np
import torch

from uvs_core.estimators.base import neighbour_pairs, unique_rows
from uvs_core.tasks import error_fn
from uvs_learning.mlp import TorchEstimator, residual_penalty


def damped_pinv(jac: torch.Tensor, damping: float = 1e-6) -> torch.Tensor:
    """Differentiable pseudo-inverse of a batch of Jacobians: (B, m, k) -> (B, k, m).

    J^T (J J^T + d I)^-1 for m <= k, (J^T J + d I)^-1 J^T for m > k. For a
    full-rank J and d -> 0 this is the Moore-Penrose inverse
    (torch.linalg.pinv); unlike the SVD route its gradient stays finite when
    singular values coincide (any 2x2 rotation-like J), and the small
    damping bounds it near singular configurations.
    """
    m, k = jac.shape[-2], jac.shape[-1]
    jt = jac.transpose(-1, -2)
    if m <= k:
        eye = torch.eye(m, dtype=jac.dtype)
        return jt @ torch.linalg.solve(jac @ jt + damping * eye, torch.eye(m, dtype=jac.dtype))
    eye = torch.eye(k, dtype=jac.dtype)
    return torch.linalg.solve(jt @ jac + damping * eye, jt)


class NeuralJacobian(TorchEstimator):
    """NJ: an MLP predicting J, trained on the secant condition (Eq. 2, beta = 0)."""

    name = "nj"
    DEFAULTS = {**TorchEstimator.DEFAULTS, "activation": "relu", "pairs": 10, "beta": 0.0,
                "pinv_damping": 1e-6, "batch_size": 128}

    def __init__(self, task, **params):
        super().__init__(task, **params)
        if int(self.params["pairs"]) < 1:
            raise ValueError(f"{self.name}: pairs must be >= 1, got {self.params['pairs']}")
        if float(self.params["beta"]) < 0.0:
            raise ValueError(f"{self.name}: beta must be >= 0, got {self.params['beta']}")
        self._pair_scale: float | None = None

    def _outputs(self) -> int:
        return self.m * self.k

    def _prepare(self, qa, x, mask, traj):
        # Pairs between distinct configurations only (exact copies of home
        # would pair with each other and give dq = 0).
        sel = np.flatnonzero(mask)
        sel = sel[unique_rows(qa[sel])]
        qn = (qa[sel] - self.q_mean) / self.q_std
        xn = (x[sel] - self.x_mean) / self.x_std
        n = qn.shape[0]
        i, j = neighbour_pairs(qa[sel], int(self.params["pairs"]))
        p = i.size // max(n, 1)
        if p == 0:
            raise ValueError(f"{self.name}: need at least 2 samples per split to form pairs")
        j = j.reshape(n, p)
        error = error_fn(self.task)
        if self._pair_scale is None:
            # The first call prepares the training split; its scale serves the validation split.
            dq = qn[j] - qn[:, None, :]
            self._pair_scale = float(np.sqrt(np.mean(np.sum(dq * dq, axis=-1)))) or 1.0
        return {
            "items": n,
            "qn": torch.as_tensor(qn, dtype=torch.float32),
            "xn": torch.as_tensor(xn, dtype=torch.float32),
            "j": torch.as_tensor(j, dtype=torch.long),
            "scale": self._pair_scale,
            # pose: the pairs' task error e(x_i, x_j) (log map for the orientation), so the
            # network learns the geometric J and pairs across the rotation vector's wrap
            # at pi are right; other tasks take xn_j - xn_i in _pairs, as always.
            "dxn": None if error is None else torch.as_tensor(
                error(x[sel][:, None, :], x[sel][j]) / self.x_std, dtype=torch.float32),
        }

    def _train(self, qa, x, traj, train, val, progress):
        self._pair_scale = None
        return super()._train(qa, x, traj, train, val, progress)

    def _pairs(self, data, idx):
        qn, xn = data["qn"], data["xn"]
        j = data["j"][idx]  # (B, p)
        inv = 1.0 / data["scale"]
        dq = (qn[j] - qn[idx][:, None, :]) * inv  # (B, p, k)
        if data.get("dxn") is not None:
            dx = data["dxn"][idx] * inv
        else:
            dx = (xn[j] - xn[idx][:, None, :]) * inv  # (B, p, m)
        return qn[idx], dq, dx

    def _loss(self, net, data, idx):
        z, dq, dx = self._pairs(data, idx)
        jac = net(z).view(-1, self.m, self.k)
        res = dx - dq @ jac.transpose(1, 2)
        kind, delta = self.params["loss"], float(self.params["huber_delta"])
        loss = residual_penalty(res, kind, delta).mean()
        beta = float(self.params["beta"])
        if beta > 0.0:
            jinv = damped_pinv(jac, float(self.params["pinv_damping"]))
            res_q = dq - dx @ jinv.transpose(1, 2)
            loss = loss + beta * residual_penalty(res_q, kind, delta).mean()
        return loss

    @torch.no_grad()
    def _init_net(self, net, data) -> None:
        # Start from the best constant Jacobian of the training pairs (global
        # least squares) so early epochs refine J rather than find its scale.
        idx = torch.arange(data["items"])
        _, dq, dx = self._pairs(data, idx)
        dq = dq.reshape(-1, self.k).double()
        dx = dx.reshape(-1, self.m).double()
        sol = torch.linalg.lstsq(dq, dx).solution  # (k, m): dx ~ dq @ sol
        last = [mod for mod in net.net if isinstance(mod, torch.nn.Linear)][-1]
        last.bias.copy_(sol.T.reshape(-1).float())

    def _extract(self) -> None:
        scale = (self.x_std[:, None] / self.q_std[None, :]).reshape(-1)
        self._fold(np.zeros(self.m * self.k), scale)

    def _estimate(self, qa):
        return self._np_forward(qa).reshape(self.m, self.k)

    def _estimate_batch(self, qa):
        return self._np_forward(qa).reshape(qa.shape[0], self.m, self.k)

    def torch_jacobian(self, qa, dtype=torch.float64) -> np.ndarray:
        """The network's J through torch (reference for the numpy path): (B, k) -> (B, m, k)."""
        self._require()
        net = self.net.to(dtype)
        try:
            q = torch.as_tensor(np.asarray(qa, dtype=np.float64), dtype=dtype).reshape(-1, self.k)
            with torch.no_grad():
                jn = net(self.torch_normalised(q)).view(-1, self.m, self.k).numpy()
            return jn * (self.x_std[:, None] / self.q_std[None, :])
        finally:
            self.net.to(torch.float32)


class BiNeuralJacobian(NeuralJacobian):
    """Bi-NJ: NJ with the inverse secant term, beta = 1 (Eq. 2)."""

    name = "binj"
    DEFAULTS = {**NeuralJacobian.DEFAULTS, "beta": 1.0}
    # Visual servoing's J is 2x2, so its pseudo-inverse is the inverse: in the first
    # epochs J passes near singular, the inverse term blows up (loss ~10^3) and Adam's
    # steps leave dead ReLU units. With damping 1e-6 every try ended at mean
    # |J - J*|_F 150-230 px/rad (|J*|_F ~190; seeds 0-2, paper or design babbling);
    # 0.1 (normalised units, where J is O(1)) bounds the inverse: 18 px/rad, NJ's 11.
    TASK_DEFAULTS = {**NeuralJacobian.TASK_DEFAULTS, "visual_servo": {
        **NeuralJacobian.TASK_DEFAULTS["visual_servo"], "pinv_damping": 0.1}}
