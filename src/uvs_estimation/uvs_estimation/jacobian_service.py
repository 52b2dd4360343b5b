"""What the Jacobian estimator service does, without ROS.

The node (``estimator_node``) converts messages and owns parameters; this
module holds the logic so it is testable with plain pytest:

- :func:`parse_request`: validate ``joint_positions`` / ``task_position`` of an
  EstimateJacobian request against a task;
- :class:`ModelConfig` and :func:`build_estimator`: where an estimator's model
  lives and how an estimator is built (directly, or loaded from its model);
- :class:`JacobianService`: the current estimator behind a lock, swapped
  atomically, answering requests with an :class:`Answer`.

Shapes: ``q (n,)`` rad, all robot joints in /joint_states order; ``qa (k,)``
rad, the task's active joints; ``x (m,)`` task units; ``J (m, k)`` task units
per rad, row-major on the wire.
"""

from __future__ import annotations

import array
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.linalg.lapack import dgesdd

from uvs_core.estimators import (
    Estimator,
    ModelError,
    estimator_spec,
    load_estimator,
    make_estimator,
)
from uvs_core.estimators._native import condition_number as native_condition_number
from uvs_core.estimators.base import read_metadata
from uvs_core.estimators.cache import FIRST_USE, cached_model_path, first_use_model

__all__ = [
    "Answer",
    "EstimatorSetupError",
    "JacobianService",
    "ModelConfig",
    "RequestError",
    "build_estimator",
    "condition_number",
    "model_robot",
    "needs_model",
    "parse_request",
]


class RequestError(ValueError):
    """A request that cannot be answered: the message says what was expected."""


class EstimatorSetupError(RuntimeError):
    """An estimator cannot be built: unknown name, missing/corrupt/mismatched model."""


# ----------------------------------------------------------------- requests
#
# Every request passes here, and in a server that sleeps between requests
# each numpy call costs several times what it does in a hot loop: the checks
# are plain Python over the values, with one numpy array made at the end.

def _floats(values) -> tuple[Sequence[float] | None, int]:
    """(values as a flat sequence of floats, or None unless 1-D; their count).

    rclpy hands float64[] fields over as array('d'), which is used as it is.
    """
    if type(values) is array.array:
        return values, len(values)
    values = np.asarray(values, dtype=np.float64)
    return (values if values.ndim == 1 else None), values.size


def _non_finite(values: Sequence[float]) -> list[int] | None:
    """Indices of the non-finite values, None when all are finite."""
    isfinite = math.isfinite
    if all(map(isfinite, values)):
        return None
    return [i for i, v in enumerate(values) if not isfinite(v)]


def parse_request(task, joint_positions: Sequence[float],
                  task_position: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a request against ``task``.

    joint_positions: (n,) rad, every robot joint in /joint_states order (the
    task's active joints are selected), or (k,) rad, the active joints only.
    task_position: () (absent) or (m,) in task units.
    Returns (qa (k,), x (m,) or None), new float64 arrays; RequestError
    saying what was expected.
    """
    robot = task.robot
    n, k, m = robot.n, task.k, task.m
    q, count = _floats(joint_positions)
    if q is None or count not in (n, k):
        expected = f"{n} (all joints of robot '{robot.name}', /joint_states order)"
        if k != n:
            active = ", ".join(robot.joint_names[i] for i in task.active)
            expected += f" or {k} (the active joints of task '{task.name}': {active})"
        raise RequestError(f"joint_positions: expected {expected} values (rad), got {count}")
    bad = _non_finite(q)
    if bad is not None:
        raise RequestError(f"joint_positions: expected finite values (rad), "
                           f"non-finite at index {bad}")
    qa = np.array(q, dtype=np.float64)
    if count != k:
        qa = qa[task.active]

    x, count = _floats(task_position)
    if count == 0:
        return qa, None
    if x is None or count != m:
        raise RequestError(
            f"task_position: expected 0 (absent) or {m} values for task '{task.name}' "
            f"({', '.join(task.labels)}; {task.units}), got {count}"
        )
    bad = _non_finite(x)
    if bad is not None:
        raise RequestError(f"task_position: expected finite values, non-finite at index {bad}")
    return qa, np.array(x, dtype=np.float64)


# --------------------------------------------------------------- estimators

def needs_model(name: str) -> bool:
    """Whether estimator ``name`` is learned, i.e. served from a trained model,
    as its registry spec declares (imports nothing). ValueError for an unknown name."""
    return estimator_spec(name).learned


@dataclass(frozen=True)
class ModelConfig:
    """Where each learned estimator's model directory is.

    model_dir: root of the shipped models, laid out ``<model_dir>/<task>/<name>`` for
    the Gen3 and ``<model_dir>/<robot>/<task>/<name>`` for another robot model.
    models: estimator name -> model directory; absent or "" means the default.
    """

    model_dir: Path
    models: Mapping[str, str] = field(default_factory=dict)

    def model_path(self, name: str, task_name: str, robot: str | None = None) -> Path:
        """``models[name]`` when set; else ``<model_dir>/<robot>/<task_name>/<name>`` when
        that is a directory (robot: the robot model's name), else
        ``<model_dir>/<task_name>/<name>`` (the shipped Gen3 models' layout; a model
        there made for another robot is refused when loaded, with the reason)."""
        explicit = str(self.models.get(name, "") or "").strip()
        if explicit:
            return Path(explicit).expanduser()
        if robot:
            per_robot = Path(self.model_dir) / robot / task_name / name
            if per_robot.is_dir():
                return per_robot
        return Path(self.model_dir) / task_name / name

    def with_changes(self, model_dir: Path | None = None,
                     models: Mapping[str, str] | None = None) -> ModelConfig:
        merged = dict(self.models)
        merged.update(models or {})
        return replace(self, model_dir=self.model_dir if model_dir is None else Path(model_dir),
                       models=merged)


def build_estimator(name: str, task, config: ModelConfig,
                    log: Callable[[str], None] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    ) -> tuple[Estimator, Path | None]:
    """Build estimator ``name`` for ``task``, ready to estimate.

    Estimators that need no model (tj) are made directly; learned ones (and
    broyden, whose first Jacobian is fitted on data) are loaded from
    ``config.model_path(name, task.name, task.robot.name)`` and checked
    against the task (name, task, robot, m, k, active joints). When that is
    the default path (``models.<name>`` empty) and holds no model, or one made for
    another robot, an estimator made on first use (llknn, broyden;
    uvs_core.estimators.cache) is loaded
    from the cache, made there first when missing or unusable; ``log`` gets
    its milestones and ``progress(done, total)`` its babbling.
    Returns (estimator, model path or None). EstimatorSetupError with the
    reason when the name is unknown, its package is missing, or the model is
    missing, corrupt or made for something else.
    """
    try:
        learned = needs_model(name)
    except ValueError as exc:
        raise EstimatorSetupError(str(exc)) from None
    if not learned and name not in FIRST_USE:
        try:
            return make_estimator(name, task), None
        except (ValueError, TypeError, ImportError) as exc:
            raise EstimatorSetupError(f"estimator {name!r}: {exc}") from None
    path = config.model_path(name, task.name, task.robot.name)
    explicit = bool(str(config.models.get(name, "") or "").strip())
    made_for = model_robot(path) if path.is_dir() else None
    if not explicit and name in FIRST_USE and (
            not path.is_dir() or made_for not in (None, task.robot.name)):
        try:
            return first_use_model(name, task, lambda p: load_estimator(p, task=task, name=name),
                                   progress=progress, log=log)
        # As below: a model that fails to load right after it was made, or a cache
        # that cannot be written, is a reason this estimator cannot be served.
        except Exception as exc:  # noqa: BLE001
            raise EstimatorSetupError(
                f"estimator {name!r}: cannot make its model in the cache "
                f"{cached_model_path(name, task)}: {type(exc).__name__}: {exc}"
            ) from None
    if not path.is_dir():
        raise EstimatorSetupError(
            f"estimator {name!r} needs a trained model: {path} is not a model directory "
            f"(train one with 'uvs train', or set parameter models.{name})"
        )
    if made_for is not None and made_for != task.robot.name:
        raise EstimatorSetupError(
            f"estimator {name!r}: model {path} was made for robot {made_for!r}, this node "
            f"serves robot {task.robot.name!r}; train one for it ('uvs collect --robot "
            f"{task.robot.name} --task {task.name}', then 'uvs train --robot "
            f"{task.robot.name} --estimator {name}'; "
            f"models/README.md) and set parameter models.{name}, or put it at "
            f"{Path(config.model_dir) / task.robot.name / task.name / name}"
        )
    try:
        estimator = load_estimator(path, task=task, name=name)
    # Loading runs third-party deserialisers (numpy, torch) on a file that may
    # be anything; whatever makes it fail means "this model cannot be served",
    # and the caller must get that as a reason, not as a crashed node.
    except Exception as exc:  # noqa: BLE001
        raise EstimatorSetupError(
            f"estimator {name!r}: cannot load model {path}: {type(exc).__name__}: {exc}"
        ) from None
    return estimator, path


def model_robot(path: Path) -> str | None:
    """The robot a model directory was made for (its metadata's ``robot``), None when its
    metadata cannot be read (loading it reports why)."""
    try:
        robot = read_metadata(path).get("robot")
    except ModelError:
        return None
    return robot if isinstance(robot, str) else None


# ------------------------------------------------------------------ service

def condition_number(jac: np.ndarray) -> float:
    """2-norm condition number sigma_max / sigma_min of a finite J (m, k); inf when singular.

    The value of np.linalg.cond(J) (tested equal to 1e-12): by uvs_core's
    native one-sided Jacobi SVD when it was built (one ctypes call; scipy's
    LAPACK wrapper costs several times more per request), else by the LAPACK
    driver numpy uses (dgesdd, singular values only), called directly.
    LinAlgError, as numpy, should the SVD not converge.
    """
    value = native_condition_number(jac)
    if value is not None:
        return value
    _, s, _, info = dgesdd(jac, compute_uv=0)
    if info != 0:
        raise np.linalg.LinAlgError("SVD did not converge")
    s = s.tolist()
    return s[0] / s[-1] if s[-1] > 0.0 else math.inf


@dataclass
class Answer:
    """One response: J (m, k) row-major when success, else a message saying why not."""

    success: bool
    message: str
    estimator: str
    rows: int = 0
    cols: int = 0
    jacobian: np.ndarray | None = None
    condition_number: float = float("nan")
    #: the estimator's uncertainty of J, dimensionless; NaN = unknown (Estimator.
    #: estimate_with_uncertainty)
    uncertainty: float = float("nan")


class JacobianService:
    """The current estimator of a task, swapped atomically, answering requests.

    Thread-safe: :meth:`estimate`, :meth:`reset` and :meth:`swap` may be called
    from different threads (a MultiThreadedExecutor, a parameter callback).
    One lock serialises the estimator's use (an online estimator's update and
    estimate form one step) and the exchange of the reference, so every
    answer comes entirely from one estimator, and after :meth:`swap` returns
    no answer comes from the old one.
    """

    def __init__(self, task, name: str, estimator: Estimator):
        self.task = task
        self._lock = threading.Lock()
        self._name = name
        self._estimator = estimator

    @property
    def name(self) -> str:
        return self._name

    @property
    def estimator(self) -> Estimator:
        return self._estimator

    def swap(self, name: str, estimator: Estimator) -> str:
        """Serve ``estimator`` (built beforehand) from now on; returns the previous name."""
        with self._lock:
            old = self._name
            self._name, self._estimator = name, estimator
        return old

    def reset(self) -> str:
        """Reset the current estimator (start of a new target/trajectory); returns its name."""
        with self._lock:
            self._estimator.reset()
            return self._name

    def estimate(self, joint_positions: Sequence[float],
                 task_position: Sequence[float] = ()) -> Answer:
        """Answer one request. Never raises for a bad request or a failing estimator.

        When ``task_position`` is given, the estimator is first updated with
        (qa, x) (online estimators such as Broyden learn from it; the others
        ignore it), then asked for J at qa, and for its uncertainty where it has one
        (NaN otherwise).
        """
        try:
            qa, x = parse_request(self.task, joint_positions, task_position)
        except RequestError as exc:
            return Answer(False, str(exc), self._name)
        with self._lock:
            name, estimator = self._name, self._estimator
            try:
                # Only online estimators learn from x; Estimator.update itself
                # only validates (qa, x), which parse_request has done.
                if x is not None and type(estimator).update is not Estimator.update:
                    estimator.update(qa, x)
                if estimator.has_uncertainty:
                    jac, uncertainty = estimator.estimate_with_uncertainty(qa, x)
                else:
                    jac, uncertainty = estimator.estimate(qa, x), math.nan
            # What estimators raise for inputs they cannot handle: numeric
            # failures (ValueError, LinAlgError, ArithmeticError), torch's
            # RuntimeError, ModelError/NotFittedError for a model not loaded.
            except (ModelError, ValueError, ArithmeticError, RuntimeError, LookupError) as exc:
                return Answer(False, f"estimator '{name}' failed: {type(exc).__name__}: {exc}",
                              name)
        jac = np.asarray(jac, dtype=np.float64)
        m, k = self.task.m, self.task.k
        if jac.shape != (m, k):
            return Answer(False, f"estimator '{name}' returned shape {jac.shape}, "
                          f"expected ({m}, {k})", name)
        if not np.isfinite(jac).all():
            return Answer(False, f"estimator '{name}' returned a non-finite Jacobian", name,
                          rows=m, cols=k)
        return Answer(True, "ok", name, rows=m, cols=k, jacobian=jac,
                      condition_number=condition_number(jac), uncertainty=float(uncertainty))
