"""Multi-layer perceptrons for the neural estimators, and their numpy closed forms.

Training runs in torch (float32); deployment runs in numpy float64 on
weights extracted once after ``fit``/``load``, with the input and output
normalisation folded into the first and last layers, so ``estimate`` makes
no torch call and takes a few microseconds.

:class:`TorchEstimator` is the shared base of NJ, Bi-NJ and NK: parameter
defaults per task (the paper's network sizes), normalisation, the
trajectory-wise validation split, the epoch loop with best-epoch selection,
and the ``model.pt`` weights file (a torch state_dict of tensors, read back
with ``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import abc
import copy
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uvs_core.estimators.base import (
    Estimator,
    ModelError,
    NotFittedError,
    split_by_trajectory,
)

ACTIVATIONS = ("relu", "tanh")
LR_SCHEDULES = ("constant", "cosine")
LOSSES = ("mse", "huber")


class MLP(nn.Module):
    """``layers`` hidden layers of ``hidden`` units with ``activation``, linear output.

    forward: (..., n_in) -> (..., n_out). ``layers = 0`` is a linear map.
    """

    def __init__(self, n_in: int, n_out: int, hidden: int = 100, layers: int = 2,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        act = nn.ReLU if activation == "relu" else nn.Tanh
        mods: list[nn.Module] = []
        width = n_in
        for _ in range(int(layers)):
            mods += [nn.Linear(width, int(hidden)), act()]
            width = int(hidden)
        mods.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def forward_tangent(self, z: torch.Tensor, dz: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and directional derivatives in one forward-mode pass.

        z: (..., n_in), dz: (..., P, n_in) P tangent directions at each z ->
        (y (..., n_out), dy (..., P, n_out)) with dy = (d net / d z)(z) dz.
        Written out (tangents through each linear layer, times the
        activation derivative) rather than torch.func.jvp: same values,
        differentiable by autograd, one shared pass for the P directions.
        """
        h, t = z, dz
        for mod in self.net:
            if isinstance(mod, nn.Linear):
                h = mod(h)
                t = t @ mod.weight.T
            elif isinstance(mod, nn.Tanh):
                h = torch.tanh(h)
                t = t * (1.0 - h * h).unsqueeze(-2)
            else:  # ReLU
                t = t * (h > 0.0).to(t.dtype).unsqueeze(-2)
                h = torch.relu(h)
        return h, t

    def linear_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W (out, in), b (out,)), ...] as float64 numpy arrays, input to output."""
        return [
            (m.weight.detach().cpu().double().numpy().copy(),
             m.bias.detach().cpu().double().numpy().copy())
            for m in self.net if isinstance(m, nn.Linear)
        ]


def fold_affine(
    layers: list[tuple[np.ndarray, np.ndarray]],
    in_mean: np.ndarray, in_std: np.ndarray,
    out_mean: np.ndarray, out_std: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fold z = (q - in_mean) / in_std and y = out_mean + out_std * net(z) into the weights.

    Returns layers of a network that maps raw q to raw y; algebraically the
    same function, so its input Jacobian is the physical one.
    """
    layers = [(w.copy(), b.copy()) for w, b in layers]
    w0, b0 = layers[0]
    layers[0] = (w0 / in_std[None, :], b0 - w0 @ (in_mean / in_std))
    wl, bl = layers[-1]
    layers[-1] = (wl * out_std[:, None], out_mean + out_std * bl)
    return [(np.ascontiguousarray(w), np.ascontiguousarray(b)) for w, b in layers]


def numpy_forward(layers, activation: str, q: np.ndarray) -> np.ndarray:
    """MLP forward in numpy: q (..., n_in) -> (..., n_out), float64."""
    act = np.tanh if activation == "tanh" else _relu
    h = q
    for w, b in layers[:-1]:
        h = act(h @ w.T + b)
    w, b = layers[-1]
    return h @ w.T + b


def read_state_dict(path: Path) -> dict:
    """The state_dict saved at ``path`` (torch.save, tensors only, onto the CPU); ModelError
    naming the file when it is corrupt, unreadable or not a dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: corrupt or unreadable weights file: {exc}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def numpy_input_jacobian(layers, activation: str, q: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form input Jacobian of the MLP.

    q (..., n_in) -> (y (..., n_out), dy/dq (..., n_out, n_in)), float64.

    Forward-mode product W_L D_{L-1} W_{L-1} ... D_1 W_1 with D_i the
    activation derivative (tanh: 1 - h^2, ReLU: 1[a > 0]) at q.
    """
    h = q
    jac = None
    for w, b in layers[:-1]:
        a = h @ w.T + b
        if activation == "tanh":
            h = np.tanh(a)
            d = 1.0 - h * h
        else:
            h = np.maximum(a, 0.0)
            d = (a > 0.0).astype(a.dtype)
        # jac: (..., hidden, n_in)
        jac = d[..., :, None] * (w if jac is None else np.matmul(w, jac))
    w, b = layers[-1]
    y = h @ w.T + b
    jac = w if jac is None else np.matmul(w, jac)
    if jac.ndim < q.ndim + 1:
        jac = np.broadcast_to(jac, q.shape[:-1] + jac.shape).copy()
    return y, jac


def residual_penalty(res: torch.Tensor, loss: str = "mse", delta: float = 0.1
                     ) -> torch.Tensor:
    """Per-item penalty of residual vectors: res (..., m) -> (...).

    "mse": ||r||^2. "huber": ||r||^2 where ||r|| <= delta, else 2 delta ||r|| - delta^2
    (the Huber function of the residual's norm, times 2 so that it equals the squared
    error below delta): an outlier pulls with a bounded force 2 delta instead of 2 ||r||.
    """
    sq = (res * res).sum(dim=-1)
    if loss == "mse":
        return sq
    if loss != "huber":
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    # Clamped so the unused branch's gradient stays finite at r = 0.
    norm = sq.clamp(min=1e-24).sqrt()
    return torch.where(norm <= delta, sq, 2.0 * delta * norm - delta * delta)


def _relu(a):
    return np.maximum(a, 0.0)


class TorchEstimator(Estimator):
    """Base of the MLP estimators: training loop, normalisation, weights file.

    Subclasses implement :meth:`_outputs` (network output size),
    :meth:`_prepare` (training tensors), :meth:`_loss` (mean loss on a batch
    of item indices) and the numpy inference (:meth:`_extract`,
    ``_estimate``, ``_estimate_batch``).
    """

    learned = True
    WEIGHTS_FILE = "model.pt"
    DEFAULTS = {
        "hidden": 100,
        "layers": 2,
        "activation": "relu",
        "lr": 1e-3,
        "lr_schedule": "constant",
        "batch_size": 256,
        "epochs": 30,
        "weight_decay": 0.0,
        "val_fraction": 0.15,
        "seed": 0,
        "threads": 1,
        "eval_batch": 65536,
        # Training loss on the residuals: "mse" (the paper's) or "huber" (robust to
        # tracker outliers; quadratic up to huber_delta, normalised task units, then linear).
        "loss": "mse",
        "huber_delta": 0.1,
    }
    # The paper's sizes: 2 hidden layers for 7-DOF single point, 4 for
    # multi-point, 1 for 2-DOF visual servoing; ~30 / 40 epochs.
    TASK_DEFAULTS = {
        "single_point": {"layers": 2, "epochs": 30},
        "reach": {"layers": 2, "epochs": 30},
        "multi_point": {"layers": 4, "epochs": 40},
        "visual_servo": {"layers": 1, "epochs": 30},
        # position and orientation: 6 DOF as multi point's frame, so its depth
        "pose": {"layers": 4, "epochs": 30},
        "default": {},
    }

    def __init__(self, task, **params):
        super().__init__(task, **params)
        p = self.params
        if p["activation"] not in ACTIVATIONS:
            raise ValueError(
                f"{self.name}: activation must be one of {ACTIVATIONS}, got {p['activation']!r}"
            )
        for key in ("hidden", "batch_size", "epochs"):
            if int(p[key]) < 1:
                raise ValueError(f"{self.name}: {key} must be >= 1, got {p[key]}")
        if int(p["layers"]) < 0:
            raise ValueError(f"{self.name}: layers must be >= 0, got {p['layers']}")
        if p["lr_schedule"] not in LR_SCHEDULES:
            raise ValueError(
                f"{self.name}: lr_schedule must be one of {LR_SCHEDULES}, got {p['lr_schedule']!r}"
            )
        if p["loss"] not in LOSSES:
            raise ValueError(f"{self.name}: loss must be one of {LOSSES}, got {p['loss']!r}")
        if not float(p["huber_delta"]) > 0.0:
            raise ValueError(f"{self.name}: huber_delta must be > 0, got {p['huber_delta']}")
        if not 0.0 <= float(p["val_fraction"]) < 1.0:
            raise ValueError(
                f"{self.name}: val_fraction must be in [0, 1), got {p['val_fraction']}"
            )
        self.net: MLP | None = None
        self.q_mean = np.zeros(self.k)
        self.q_std = np.ones(self.k)
        self.x_mean = np.zeros(self._x_dim())
        self.x_std = np.ones(self._x_dim())
        self._layers = None

    # ----------------------------------------------------------- subclass API
    def _x_dim(self) -> int:
        """Size of the training targets x after :meth:`_targets` (default m)."""
        return self.m

    def _targets(self, x: np.ndarray) -> np.ndarray:
        """The task states as the network learns them: (N, m) -> (N, _x_dim()); as given
        by default."""
        return x

    @abc.abstractmethod
    def _outputs(self) -> int:
        """Network output size."""

    @abc.abstractmethod
    def _prepare(self, qa: np.ndarray, x: np.ndarray, mask: np.ndarray,
                 traj: np.ndarray) -> dict:
        """Training tensors for the samples selected by ``mask`` (N,) bool.

        ``traj`` (N,) holds the trajectory ids of all samples (consecutive
        samples of one trajectory are consecutive rows).

        Returns a dict with at least ``"items"``: the number of batchable items.
        """

    @abc.abstractmethod
    def _loss(self, net: MLP, data: dict, idx: torch.Tensor) -> torch.Tensor:
        """Mean loss over items ``idx`` (LongTensor)."""

    @abc.abstractmethod
    def _extract(self) -> None:
        """Build the numpy inference weights from ``self.net`` and the normalisation."""

    # --------------------------------------------------------------- training
    def _new_net(self) -> MLP:
        p = self.params
        return MLP(self.k, self._outputs(), hidden=int(p["hidden"]), layers=int(p["layers"]),
                   activation=p["activation"])

    def fit(self, qa, x, traj=None, progress=None) -> dict:
        qa, x, traj = self._check_data(qa, x, traj)
        x = self._targets(x)
        p = self.params
        if qa.shape[0] < 2:
            raise ValueError(f"{self.name}: need at least 2 samples to fit, got {qa.shape[0]}")
        val = split_by_trajectory(traj, float(p["val_fraction"]), int(p["seed"]))
        train = ~val
        # Normalisation from the training split only; std floored so a joint
        # that never moved does not blow up the inputs.
        self.q_mean = qa[train].mean(axis=0)
        self.q_std = np.maximum(qa[train].std(axis=0), 1e-6)
        self.x_mean = x[train].mean(axis=0)
        self.x_std = np.maximum(x[train].std(axis=0), 1e-9)

        old_threads = torch.get_num_threads()
        if p["threads"]:
            torch.set_num_threads(int(p["threads"]))
        try:
            report = self._train(qa, x, traj, train, val, progress)
        finally:
            torch.set_num_threads(old_threads)
        self._extract()
        report.update(n_train=int(train.sum()), n_val=int(val.sum()))
        return report

    def _train(self, qa, x, traj, train, val, progress) -> dict:
        p = self.params
        t0 = time.perf_counter()
        torch.manual_seed(int(p["seed"]))
        gen = torch.Generator().manual_seed(int(p["seed"]))
        net = self._new_net()
        tr = self._prepare(qa, x, train, traj)
        va = self._prepare(qa, x, val, traj) if val.any() else None
        self._init_net(net, tr)
        opt = torch.optim.Adam(net.parameters(), lr=float(p["lr"]),
                               weight_decay=float(p["weight_decay"]))
        epochs = int(p["epochs"])
        bs = int(p["batch_size"])
        steps = epochs * ((tr["items"] + bs - 1) // bs)
        sched = None
        if p["lr_schedule"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        best = (float("inf"), 0, copy.deepcopy(net.state_dict()))
        history = []
        diverged = False
        for epoch in range(1, epochs + 1):
            net.train()
            perm = torch.randperm(tr["items"], generator=gen)
            total = 0.0
            for s in range(0, tr["items"], bs):
                idx = perm[s:s + bs]
                loss = self._loss(net, tr, idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * idx.numel()
            train_loss = total / tr["items"]
            val_loss = self._eval_loss(net, va) if va is not None else train_loss
            history.append([train_loss, val_loss])
            if progress is not None:
                progress(epoch, epochs, train_loss, val_loss)
            if not np.isfinite(train_loss) or not np.isfinite(val_loss):
                diverged = True
                break
            if val_loss < best[0]:
                best = (val_loss, epoch, copy.deepcopy(net.state_dict()))
        net.load_state_dict(best[2])
        net.eval()
        self.net = net
        return {
            "val_loss": float(best[0]),
            "train_loss": float(history[best[1] - 1][0]) if best[1] else float("nan"),
            "best_epoch": int(best[1]),
            "epochs_run": len(history),
            "history": history,
            "diverged": diverged,
            "fit_seconds": time.perf_counter() - t0,
        }

    def _init_net(self, net: MLP, data: dict) -> None:
        """Hook to initialise the network from the training data (default: nothing)."""

    @torch.no_grad()
    def _eval_loss(self, net: MLP, data: dict) -> float:
        net.eval()
        n = data["items"]
        step = max(1, int(self.params["eval_batch"]))
        total = 0.0
        for s in range(0, n, step):
            idx = torch.arange(s, min(n, s + step))
            total += float(self._loss(net, data, idx)) * idx.numel()
        return total / n

    # -------------------------------------------------------------- inference
    def _require(self):
        if self._layers is None:
            raise NotFittedError(f"{self.name}: not trained; call fit() or load a model first")

    def _fold(self, out_mean: np.ndarray, out_std: np.ndarray) -> None:
        self._layers = fold_affine(self.net.linear_layers(), self.q_mean, self.q_std,
                                   out_mean, out_std)

    def _np_forward(self, qa: np.ndarray) -> np.ndarray:
        self._require()
        return numpy_forward(self._layers, self.params["activation"], qa)

    def _np_jacobian(self, qa: np.ndarray) -> np.ndarray:
        self._require()
        return numpy_input_jacobian(self._layers, self.params["activation"], qa)[1]

    def torch_normalised(self, qa: torch.Tensor) -> torch.Tensor:
        """(..., k) rad -> normalised network input (same dtype as qa)."""
        mean = torch.as_tensor(self.q_mean, dtype=qa.dtype)
        std = torch.as_tensor(self.q_std, dtype=qa.dtype)
        return (qa - mean) / std

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild the estimator: network weights and normalisation."""
        if self.net is None:
            raise NotFittedError(f"{self.name}: nothing to save; call fit() first")
        state = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        for key in ("q_mean", "q_std", "x_mean", "x_std"):
            state[key] = torch.as_tensor(getattr(self, key), dtype=torch.float64).clone()
        return state

    def load_state_dict(self, state: dict, source: str = "state_dict") -> None:
        """Rebuild the network from a state_dict(); ModelError (naming ``source``) on
        missing, misshapen or non-finite tensors."""
        shapes = {"q_mean": (self.k,), "q_std": (self.k,), "x_mean": (self._x_dim(),),
                  "x_std": (self._x_dim(),)}
        for key, shape in shapes.items():
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                found = None if value is None else tuple(getattr(value, "shape", ()))
                raise ModelError(f"{source}: tensor '{key}' missing or of shape {found}, "
                                 f"expected {shape}")
        net = self._new_net()
        net_state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        try:
            net.load_state_dict(net_state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{source}: network weights do not match the metadata "
                             f"(hidden={self.params['hidden']}, layers={self.params['layers']}, "
                             f"outputs={self._outputs()}): {exc}") from None
        for key in shapes:
            setattr(self, key, state[key].double().numpy().copy())
        if not all(np.isfinite(getattr(self, key)).all() for key in shapes) or not all(
            torch.isfinite(v).all() for v in net_state.values()
        ):
            raise ModelError(f"{source}: weights contain non-finite values")
        net.eval()
        self.net = net
        self._extract()

    def _save_weights(self, directory: Path) -> None:
        torch.save(self.state_dict(), directory / self.WEIGHTS_FILE)

    def _load_weights(self, path: Path) -> None:
        self.load_state_dict(read_state_dict(path), source=str(path))
