"""Neural Kinematics (paper III-B): learn x = f(qa), differentiate it for J.

An MLP is fit to the forward map with the mean squared error on normalised
x, plus (``secant_weight`` > 0, default 30) a derivative term on consecutive
samples of each babbling trajectory, weight * mean ||J(z_t) dz_t - dy_t||^2 /
mean ||dz_t||^2, which roughly halves the Jacobian error of the plain MSE
(see README.md); ``secant_weight=0`` is the paper's loss exactly. The
Jacobian is the network's input derivative J_ij = d f_i / d q_j. At deployment
the derivative is computed in closed form in numpy (float64) from the
trained weights with the normalisation folded in; :meth:`torch_jacobian`
gives the same by autograd (used to test the closed form).
"""

from __future__ import annotations

import numpy as np
import torch

from uvs_learning.mlp import TorchEstimator, numpy_input_jacobian, residual_penalty

SECANT_MODES = ("forward", "central")


class _NeuralKinematics(TorchEstimator):
    """Shared NK implementation; subclasses fix the activation and weight decay."""

    NK_DEFAULTS = {"secant_weight": 30.0, "secant_steps": 1, "secant_mode": "forward",
                   "lr": 1e-2, "lr_schedule": "cosine"}

    def __init__(self, task, **params):
        super().__init__(task, **params)
        p = self.params
        if not float(p["secant_weight"]) >= 0.0:
            raise ValueError(f"{self.name}: secant_weight must be >= 0, got {p['secant_weight']}")
        if int(p["secant_steps"]) < 1:
            raise ValueError(f"{self.name}: secant_steps must be >= 1, got {p['secant_steps']}")
        if p["secant_mode"] not in SECANT_MODES:
            raise ValueError(f"{self.name}: secant_mode must be one of {SECANT_MODES}, "
                             f"got {p['secant_mode']!r}")
        self._secant_scale: np.ndarray | None = None

    def _x_dim(self) -> int:
        features = getattr(self.task, "nk_features_dim", None)
        return self.m if features is None else int(features)

    def _targets(self, x):
        """x as NK learns it: the task's ``nk_features`` (pose: position and the 9 entries
        of the rotation matrix, smooth everywhere where the rotation vector wraps at pi),
        or x itself."""
        features = getattr(self.task, "nk_features", None)
        return x if features is None else features(x)

    def _outputs(self) -> int:
        return self._x_dim()

    def _train(self, qa, x, traj, train, val, progress):
        self._secant_scale = None
        return super()._train(qa, x, traj, train, val, progress)

    def _prepare(self, qa, x, mask, traj):
        sel = np.flatnonzero(mask)
        zn = (qa[sel] - self.q_mean) / self.q_std
        yn = (x[sel] - self.x_mean) / self.x_std
        data = {"items": int(sel.size), "z": torch.as_tensor(zn, dtype=torch.float32),
                "y": torch.as_tensor(yn, dtype=torch.float32)}
        if float(self.params["secant_weight"]) > 0.0:
            data.update(self._secant_pairs(zn, yn, mask, np.asarray(traj)))
        return data

    def _secant_pairs(self, zn, yn, mask, traj) -> dict:
        """Tangents along the trajectories at every selected sample.

        zn, yn: normalised q and x of the selected samples (rows of
        ``mask``). For offset o = 1..secant_steps: forward pairs (t, t+o),
        or central pairs (t-o, t+o) evaluated at t, in recording order. A
        pair exists only where both ends are selected samples of the same
        trajectory. Returns dz (N, P, k), dy (N, P, m), have (N, P) as 0/1
        and the per-offset weights 1 / mean ||dz||^2 (of the training split).
        """
        n_all = mask.size
        sel = np.flatnonzero(mask)
        row = np.full(n_all, -1)
        row[sel] = np.arange(sel.size)
        steps = int(self.params["secant_steps"])
        central = self.params["secant_mode"] == "central"
        dz = np.zeros((sel.size, steps, self.k))
        dy = np.zeros((sel.size, steps, yn.shape[1]))
        have = np.zeros((sel.size, steps), dtype=bool)
        for o in range(1, steps + 1):
            lo = sel - o if central else sel
            hi = sel + o
            ok = (lo >= 0) & (hi < n_all)
            lo_c, hi_c = np.clip(lo, 0, n_all - 1), np.clip(hi, 0, n_all - 1)
            ok &= (mask[lo_c] & mask[hi_c] & (traj[lo_c] == traj[sel])
                   & (traj[hi_c] == traj[sel]))
            a, b = row[lo_c[ok]], row[hi_c[ok]]
            have[ok, o - 1] = True
            dz[ok, o - 1] = zn[b] - zn[a]
            dy[ok, o - 1] = yn[b] - yn[a]
        if self._secant_scale is None:
            # The first call prepares the training split; its scale serves validation too.
            sq = np.sum(dz * dz, axis=-1)
            mean = np.array([sq[have[:, o], o].mean() if have[:, o].any() else 1.0
                             for o in range(steps)])
            self._secant_scale = 1.0 / np.maximum(mean, 1e-12)
        return {"dz": torch.as_tensor(dz, dtype=torch.float32),
                "dy": torch.as_tensor(dy, dtype=torch.float32),
                "have": torch.as_tensor(have, dtype=torch.float32),
                "scale": torch.as_tensor(self._secant_scale, dtype=torch.float32)}

    def _loss(self, net, data, idx):
        weight = float(self.params["secant_weight"])
        kind, delta = self.params["loss"], float(self.params["huber_delta"])
        if weight == 0.0:
            err = net(data["z"][idx]) - data["y"][idx]
            # Per sample ||x - f(q)||^2 (or its Huber), averaged over samples.
            return residual_penalty(err, kind, delta).mean()
        y, dy = net.forward_tangent(data["z"][idx], data["dz"][idx])
        err = y - data["y"][idx]
        loss = residual_penalty(err, kind, delta).mean()
        res = dy - data["dy"][idx]
        have = data["have"][idx]
        if kind == "mse":
            sq = (res * res).sum(dim=-1) * have * data["scale"]  # (B, P)
        else:
            # The tangent residual in the units its weight gives it: sqrt(scale) * res.
            sq = residual_penalty(res * data["scale"].sqrt()[:, None], kind, delta) * have
        return loss + weight * sq.sum() / have.sum().clamp(min=1.0)

    def _extract(self) -> None:
        self._fold(self.x_mean, self.x_std)

    # ------------------------------------------------------------- inference
    def predict(self, qa) -> np.ndarray:
        """Learned forward map: qa (k,) or (B, k) rad -> x (m,) or (B, m) (pose: its
        features (12,) or (B, 12), see PoseTask.nk_features)."""
        return self._np_forward(np.asarray(qa, dtype=np.float64))

    def _estimate(self, qa):
        return self._geometric(qa)

    def _estimate_batch(self, qa):
        return self._geometric(qa)

    def _geometric(self, qa):
        """The task's Jacobian from the network's derivative: dx/dq itself, or for a task
        with ``nk_features`` (pose) the task's map of the features' derivative at the
        network's own features (Task.nk_jacobian: the geometric Jacobian)."""
        to_task = getattr(self.task, "nk_jacobian", None)
        if to_task is None:
            return self._np_jacobian(qa)
        self._require()
        y_hat, dy = numpy_input_jacobian(self._layers, self.params["activation"], qa)
        return to_task(y_hat, dy)

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
    DEFAULTS = {**TorchEstimator.DEFAULTS, **_NeuralKinematics.NK_DEFAULTS,
                "activation": "tanh", "batch_size": 64}
    TASK_DEFAULTS = {
        **TorchEstimator.TASK_DEFAULTS,
        "multi_point": {**TorchEstimator.TASK_DEFAULTS["multi_point"], "weight_decay": 1e-6,
                        "lr": 3e-3},
    }


class NeuralKinematicsReLU(_NeuralKinematics):
    """ReLU-NK: ReLU MLP; weight decay 1e-4 single point, 1e-5 multi-point (paper IV).

    Trained by the paper's recipe by default: plain MSE (``secant_weight`` 0),
    Adam lr 1e-3, constant. With ReLU the secant term and lr 1e-2 cosine
    (nk_tanh's defaults) lower the held-out Jacobian error a little but servo
    much worse: 77.3 against 84.5 % on single point, 16.5 against 51.7 % on
    multi point (uvs benchmark, docs/benchmarks.md).
    """

    name = "nk_relu"
    DEFAULTS = {**TorchEstimator.DEFAULTS, **_NeuralKinematics.NK_DEFAULTS,
                "activation": "relu", "batch_size": 64, "weight_decay": 1e-4,
                "secant_weight": 0.0, "lr": 1e-3, "lr_schedule": "constant"}
    TASK_DEFAULTS = {
        **TorchEstimator.TASK_DEFAULTS,
        "multi_point": {**TorchEstimator.TASK_DEFAULTS["multi_point"], "weight_decay": 1e-5},
    }
