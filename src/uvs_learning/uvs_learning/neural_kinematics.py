"""Neural Kinematics (paper III-B): learn x = f(qa), differentiate it for J.

An MLP is fit to the forward map with the mean squared error on normalised
x; the Jacobian is its input derivative J_ij = d f_i / d q_j. At deployment
the derivative is computed in closed form in numpy (float64) from the
trained weights with the normalisation folded in; :meth:`torch_jacobian`
gives the same by autograd (used to test the closed form).
"""

from __future__ import annotations

import numpy as np
import torch

from uvs_learning.mlp import TorchEstimator


class _NeuralKinematics(TorchEstimator):
    """Shared NK implementation; subclasses fix the activation and weight decay."""

    def _outputs(self) -> int:
        return self.m

    def _prepare(self, qa, x, mask):
        z = torch.as_tensor((qa[mask] - self.q_mean) / self.q_std, dtype=torch.float32)
        y = torch.as_tensor((x[mask] - self.x_mean) / self.x_std, dtype=torch.float32)
        return {"items": int(mask.sum()), "z": z, "y": y}

    def _loss(self, net, data, idx):
        err = net(data["z"][idx]) - data["y"][idx]
        # Summed over task dimensions, averaged over samples: ||x - f(q)||^2.
        return (err * err).sum(dim=1).mean()

    def _extract(self) -> None:
        self._fold(self.x_mean, self.x_std)

    # ------------------------------------------------------------- inference
    def predict(self, qa) -> np.ndarray:
        """Learned forward map: qa (k,) or (B, k) rad -> x (m,) or (B, m)."""
        return self._np_forward(np.asarray(qa, dtype=np.float64))

    def _estimate(self, qa):
        return self._np_jacobian(qa)

    def _estimate_batch(self, qa):
        return self._np_jacobian(qa)

    def torch_jacobian(self, qa, dtype=torch.float64) -> np.ndarray:
        """Autograd Jacobian of the trained network: qa (B, k) rad -> (B, m, k).

        Reference implementation (torch.func.jacrev over the normalised
        network); the deployment path is the numpy closed form.
        """
        self._require()
        net = self.net.to(dtype)
        try:
            x_std = torch.as_tensor(self.x_std, dtype=dtype)
            x_mean = torch.as_tensor(self.x_mean, dtype=dtype)

            def f(q):
                return x_mean + x_std * net(self.torch_normalised(q))

            q = torch.as_tensor(np.asarray(qa, dtype=np.float64), dtype=dtype).reshape(-1, self.k)
            jac = torch.vmap(torch.func.jacrev(f))(q)
            return jac.detach().numpy()
        finally:
            self.net.to(torch.float32)


class NeuralKinematicsTanh(_NeuralKinematics):
    """Tanh-NK: tanh MLP; weight decay 0 single point, 1e-6 multi-point (paper IV)."""

    name = "nk_tanh"
    DEFAULTS = {**TorchEstimator.DEFAULTS, "activation": "tanh", "batch_size": 64}
    TASK_DEFAULTS = {
        **TorchEstimator.TASK_DEFAULTS,
        "multi_point": {**TorchEstimator.TASK_DEFAULTS["multi_point"], "weight_decay": 1e-6},
    }


class NeuralKinematicsReLU(_NeuralKinematics):
    """ReLU-NK: ReLU MLP; weight decay 1e-4 single point, 1e-5 multi-point (paper IV)."""

    name = "nk_relu"
    DEFAULTS = {**TorchEstimator.DEFAULTS, "activation": "relu", "batch_size": 64,
                "weight_decay": 1e-4}
    TASK_DEFAULTS = {
        **TorchEstimator.TASK_DEFAULTS,
        "multi_point": {**TorchEstimator.TASK_DEFAULTS["multi_point"], "weight_decay": 1e-5},
    }
