"""The Jacobian estimator interface and the model-directory format.

An estimator maps active joint positions ``qa: (k,) rad`` (and, for online
methods, the observed task state ``x: (m,)`` in task units) to a Jacobian
estimate ``J: (m, k)`` in task units per rad. Every estimator, classical or
learned, has the same life cycle: ``fit`` from babbling data (a no-op where
the method needs none), ``estimate`` / ``estimate_batch`` at deployment,
``update`` / ``reset`` for online methods, and ``save`` / ``load`` to a model
directory::

    <model>/metadata.json   what was trained, on what, how well, with what
    <model>/model.pt        torch state_dict of tensors (neural estimators)
    <model>/data.npz        arrays (LL-KNN data, Broyden's initial Jacobian)

This module never imports torch: the neural estimators (``uvs_learning``)
subclass :class:`Estimator` and write their own weights file.
"""

from __future__ import annotations

import abc
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

METADATA_FILE = "metadata.json"
MODEL_FORMAT = "uvs-estimator"
MODEL_FORMAT_VERSION = 1


class ModelError(Exception):
    """A model directory is missing, corrupt, or does not match the request."""


class NotFittedError(ModelError):
    """A learned estimator was asked for a Jacobian before fit() or load()."""


def uvs_version() -> str:
    """Version of the uvs stack, for model metadata."""
    import uvs_core

    version = getattr(uvs_core, "__version__", None)
    if version:
        return str(version)
    from importlib import metadata

    try:
        return metadata.version("uvs_core")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def split_by_trajectory(
    traj: np.ndarray, fraction: float, seed: int = 0
) -> np.ndarray:
    """Hold out whole trajectories for validation.

    traj: (N,) int trajectory ids. Returns val_mask: (N,) bool, True for the
    samples of ``round(fraction * T)`` randomly chosen trajectories (at least
    one when ``fraction > 0`` and there are two or more trajectories), chosen
    with ``np.random.default_rng(seed)`` so the split is reproducible.
    Holding out by trajectory, not by sample, keeps validation samples from
    having their own trajectory neighbours in the training set.
    """
    traj = np.asarray(traj)
    ids = np.unique(traj)
    if fraction <= 0.0 or ids.size < 2:
        return np.zeros(traj.shape[0], dtype=bool)
    count = min(ids.size - 1, max(1, int(round(fraction * ids.size))))
    rng = np.random.default_rng(seed)
    val_ids = rng.choice(ids, size=count, replace=False)
    return np.isin(traj, val_ids)


def unique_rows(qa: np.ndarray) -> np.ndarray:
    """Indices (sorted) of the first occurrence of each distinct row of qa (N, k).

    Babbling restarts every trajectory at the same home pose, so the data
    holds one exact copy of home per trajectory. Neighbourhoods made of
    copies carry no information (dq = 0): local fits and secant pairs must
    be built on distinct configurations.
    """
    _, first = np.unique(np.ascontiguousarray(qa), axis=0, return_index=True)
    return np.sort(first)


def neighbour_pairs(qa: np.ndarray, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour finite-difference pairs in joint space.

    qa: (N, k) rad. Returns (i, j): (N * p,) int index arrays, where each
    sample i is paired with its p = min(pairs, N - 1) nearest other samples j
    (Euclidean distance in rad, KD-tree). Used for the secant objective of
    Eq. 2: dq_ij = q_j - q_i, dx_ij = x_j - x_i.
    """
    from scipy.spatial import cKDTree

    n = qa.shape[0]
    p = min(int(pairs), n - 1)
    if p < 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, idx = cKDTree(qa).query(qa, k=p + 1)
    idx = np.asarray(idx, dtype=np.int64).reshape(n, p + 1)
    # The nearest point is normally the sample itself; drop it, and where
    # duplicates put it elsewhere in the row, drop that occurrence instead.
    rows = np.arange(n)[:, None]
    is_self = idx == rows
    has_self = is_self.any(axis=1)
    keep = ~is_self
    keep[~has_self, -1] = False
    j = idx[keep].reshape(n, p)
    i = np.repeat(np.arange(n, dtype=np.int64), p)
    return i, j.reshape(-1)


def secant_loss(
    estimator: Estimator, qa: np.ndarray, x: np.ndarray, pairs: int = 10
) -> float:
    """Mean squared secant residual ||dx_ij - J(q_i) dq_ij||^2 over neighbour pairs.

    qa: (N, k) rad, x: (N, m). A model-free validation loss that every
    estimator can be scored with (units: task units squared).
    """
    i, j = neighbour_pairs(qa, pairs)
    if i.size == 0:
        return float("nan")
    jac = estimator.estimate_batch(qa)
    dq = qa[j] - qa[i]
    dx = x[j] - x[i]
    res = dx - np.einsum("pmk,pk->pm", jac[i], dq)
    return float(np.mean(np.sum(res * res, axis=1)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metadata(path: str | os.PathLike) -> dict:
    """Read and validate ``<path>/metadata.json``; ModelError naming the file otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist")
    meta_path = path / METADATA_FILE
    try:
        text = meta_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{meta_path}: missing; not a uvs model directory") from None
    except OSError as exc:
        raise ModelError(f"{meta_path}: cannot read: {exc}") from None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: corrupt JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
    for field in ("estimator", "task", "robot", "m", "k"):
        if field not in meta:
            raise ModelError(f"{meta_path}: field '{field}' is missing")
    if not isinstance(meta.get("params", {}), dict):
        raise ModelError(f"{meta_path}: field 'params' must be an object")
    return meta


def check_metadata(meta: dict, path: str | os.PathLike, task=None, name: str | None = None) -> None:
    """Compare a model's metadata with what the caller asked for.

    Raises ModelError naming the file, the field, the expected and the found
    value on the first mismatch of estimator name, task name, robot name,
    task dimension m, active joint count k or active joint indices.
    """
    meta_path = Path(path) / METADATA_FILE
    expected: list[tuple[str, Any]] = []
    if name is not None:
        expected.append(("estimator", name))
    if task is not None:
        expected += [
            ("task", task.name),
            ("robot", task.robot.name),
            ("m", int(task.m)),
            ("k", int(task.k)),
        ]
        if "active" in meta:
            expected.append(("active", [int(a) for a in np.asarray(task.active).ravel()]))
    for field, want in expected:
        found = meta.get(field)
        if found != want:
            raise ModelError(
                f"{meta_path}: field '{field}' mismatch: expected {want!r}, found {found!r}"
            )


def write_model_dir(path: str | os.PathLike, metadata: dict, write_weights) -> Path:
    """Write a model directory atomically.

    The files go to a temporary sibling directory, which is renamed over
    ``path`` only when complete, so a reader never sees a half-written model
    and an interrupted save leaves the previous model intact.
    ``write_weights(tmp_dir: Path)`` writes the weights file(s).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write_weights(tmp)
        with open(tmp / METADATA_FILE, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(metadata), fh, indent=2, sort_keys=True)
            fh.write("\n")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "model")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


#: metadata fields that Estimator.metadata() writes itself
_OWN_KEYS = frozenset({
    "format", "format_version", "estimator", "task", "robot", "m", "k", "active",
    "params", "weights", "uvs_version", "created",
})


class Estimator(abc.ABC):
    """Jacobian estimator for one task.

    Subclasses set ``name`` (the registry name), ``learned`` (True when the
    estimator needs ``fit`` or a trained model before ``estimate``),
    ``DEFAULTS`` (every accepted parameter with its default) and optionally
    ``TASK_DEFAULTS`` (task name -> overrides, e.g. network depth per task).
    Unknown parameters are rejected with ValueError, so a typo in a YAML file
    fails loudly.

    Shapes: ``qa: (k,)`` rad active joints, ``x: (m,)`` task units,
    ``J: (m, k)`` task units per rad; batched ``(B, k) -> (B, m, k)``.
    """

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    TASK_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: file written by _save_weights (None: metadata only)
    WEIGHTS_FILE: ClassVar[str | None] = None
    #: whether estimate_with_uncertainty reports a number (else u is always NaN)
    has_uncertainty: ClassVar[bool] = False

    def __init__(self, task, **params):
        self.task = task
        self.m = int(task.m)
        self.k = int(task.k)
        self.params = self.resolve_params(task, params)
        #: training/evaluation facts stored in metadata.json by save()
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ params
    @classmethod
    def default_params(cls, task) -> dict[str, Any]:
        """All parameters with their defaults for ``task`` (per-task overrides applied)."""
        params = dict(cls.DEFAULTS)
        overrides = cls.TASK_DEFAULTS.get(getattr(task, "name", ""), None)
        if overrides is None:
            overrides = cls.TASK_DEFAULTS.get("default", {})
        params.update(overrides)
        return params

    @classmethod
    def resolve_params(cls, task, params: dict[str, Any]) -> dict[str, Any]:
        """default_params(task) overridden by the non-None entries of ``params``.

        ValueError names any key of ``params`` the estimator does not have.
        """
        resolved = cls.default_params(task)
        unknown = sorted(set(params) - set(resolved))
        if unknown:
            raise ValueError(
                f"estimator '{cls.name}': unknown parameter(s) {unknown}; "
                f"valid: {sorted(resolved)}"
            )
        for key, value in params.items():
            if value is not None:
                resolved[key] = value
        return resolved

    # -------------------------------------------------------------- validation
    def _check_qa(self, qa) -> np.ndarray:
        qa = np.asarray(qa, dtype=np.float64)
        if qa.shape != (self.k,):
            raise ValueError(
                f"estimator '{self.name}': expected {self.k} active joint positions "
                f"for task '{self.task.name}', got shape {qa.shape}"
            )
        # Plain Python over k values: cheaper than numpy's two calls, and this
        # runs on every estimate.
        if not all(map(math.isfinite, qa.tolist())):
            raise ValueError(f"estimator '{self.name}': joint positions must be finite, got {qa}")
        return qa

    def _check_qa_batch(self, qa) -> np.ndarray:
        qa = np.asarray(qa, dtype=np.float64)
        if qa.ndim != 2 or qa.shape[1] != self.k:
            raise ValueError(
                f"estimator '{self.name}': expected (B, {self.k}) active joint positions "
                f"for task '{self.task.name}', got shape {qa.shape}"
            )
        if not np.isfinite(qa).all():
            raise ValueError(f"estimator '{self.name}': joint positions must be finite")
        return qa

    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.m,):
            raise ValueError(
                f"estimator '{self.name}': expected task state of length {self.m} "
                f"for task '{self.task.name}', got shape {x.shape}"
            )
        if not all(map(math.isfinite, x.tolist())):
            raise ValueError(f"estimator '{self.name}': task state must be finite, got {x}")
        return x

    def _check_data(self, qa, x, traj) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qa = self._check_qa_batch(qa)
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (qa.shape[0], self.m):
            raise ValueError(
                f"estimator '{self.name}': x must have shape ({qa.shape[0]}, {self.m}), "
                f"got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"estimator '{self.name}': task states must be finite")
        if traj is None:
            traj = np.zeros(qa.shape[0], dtype=np.int64)
        traj = np.asarray(traj).reshape(-1)
        if traj.shape[0] != qa.shape[0]:
            raise ValueError(
                f"estimator '{self.name}': traj must have length {qa.shape[0]}, got {traj.shape[0]}"
            )
        return qa, x, traj

    # ------------------------------------------------------------- interface
    def fit(self, qa, x, traj=None, progress=None) -> dict:
        """Fit from babbling data: qa (N, k) rad, x (N, m), traj (N,) ids.

        Returns a report dict (at least ``val_loss``, possibly NaN).
        ``progress(epoch, epochs, train_loss, val_loss)`` is called per epoch
        by iterative learners.
        """
        self._check_data(qa, x, traj)
        return {"val_loss": float("nan")}

    def estimate(self, qa, x=None) -> np.ndarray:
        """Jacobian at qa: (k,) rad -> (m, k). ``x`` (m,) is optional context."""
        return self._estimate(self._check_qa(qa))

    def estimate_batch(self, qa, x=None) -> np.ndarray:
        """Jacobians at qa: (B, k) rad -> (B, m, k)."""
        return self._estimate_batch(self._check_qa_batch(qa))

    def estimate_with_uncertainty(self, qa, x=None) -> tuple[np.ndarray, float]:
        """(J (m, k), u) at qa (k,) rad: u is the estimator's own uncertainty of J,
        dimensionless (see the estimator; nk_ens: the members' relative spread), and NaN
        for an estimator with no notion of uncertainty (every one but nk_ens): NaN
        means "unknown", which the controller treats as no reason to slow down."""
        return self.estimate(qa, x), math.nan

    def estimate_batch_with_uncertainty(self, qa, x=None) -> tuple[np.ndarray, np.ndarray]:
        """(J (B, m, k), u (B,)) at qa (B, k) rad; u NaN where unknown (see above)."""
        jac = self.estimate_batch(qa, x)
        return jac, np.full(jac.shape[0], math.nan)

    @abc.abstractmethod
    def _estimate(self, qa: np.ndarray) -> np.ndarray:
        """Validated (k,) float64 -> (m, k)."""

    def _estimate_batch(self, qa: np.ndarray) -> np.ndarray:
        if qa.shape[0] == 0:
            return np.zeros((0, self.m, self.k))
        return np.stack([self._estimate(q) for q in qa])

    def update(self, qa, x) -> None:
        """Online update with the newest sample (qa (k,), x (m,)); no-op by default."""
        self._check_qa(qa)
        self._check_x(x)

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Start of a new trajectory; no-op by default."""

    # ----------------------------------------------------------- persistence
    def metadata(self) -> dict[str, Any]:
        """The model directory's metadata.json: format, estimator, task, robot, shapes,
        params, weights file, uvs version, time, and what fit() reported (``info``)."""
        meta = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "estimator": self.name,
            "task": self.task.name,
            "robot": self.task.robot.name,
            "m": self.m,
            "k": self.k,
            "active": [int(a) for a in np.asarray(self.task.active).ravel()],
            "params": dict(self.params),
            "weights": self.WEIGHTS_FILE,
            "uvs_version": uvs_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        meta.update(self.info)
        return meta

    def save(self, path) -> Path:
        """Write the model directory ``path`` (metadata.json + weights) atomically."""
        return write_model_dir(path, self.metadata(), self._save_weights)

    @classmethod
    def load(cls, path, task) -> Estimator:
        """Load a model directory written by save(); ModelError on any problem."""
        path = Path(path)
        meta = read_metadata(path)
        check_metadata(meta, path, task=task, name=cls.name)
        try:
            est = cls(task, **meta.get("params", {}))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path / METADATA_FILE}: bad 'params': {exc}") from None
        # Training facts (val_loss, data_hash, ...) survive a load/save round trip.
        est.info = {k: v for k, v in meta.items() if k not in _OWN_KEYS}
        if cls.WEIGHTS_FILE is not None:
            weights = path / cls.WEIGHTS_FILE
            if not weights.is_file():
                raise ModelError(f"{weights}: weights file missing")
            est._load_weights(weights)
        return est

    def _save_weights(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Write WEIGHTS_FILE into ``directory`` (nothing by default)."""

    def _load_weights(self, path: Path) -> None:  # noqa: B027 - optional hook
        """Read the weights file at ``path``; raise ModelError naming it on failure."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.name!r}, m={self.m}, k={self.k})"


def load_npz(path: Path, required: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Load arrays from an npz file with shape checks; ModelError naming the file.

    required: name -> expected shape, where None in a shape matches any size.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.array(data[name]) for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: corrupt or unreadable weights file: {exc}") from None
    for name, shape in required.items():
        if name not in arrays:
            raise ModelError(f"{path}: array '{name}' missing")
        arr = arrays[name]
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape)
        ):
            raise ModelError(f"{path}: array '{name}' has shape {arr.shape}, expected {shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ModelError(f"{path}: array '{name}' contains non-finite values")
    return arrays
