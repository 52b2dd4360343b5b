"""The paper's evaluation (section IV): batched servo rollouts and their metrics.

``rollout`` runs B servo trajectories of one estimator at once in the core
simulation with the controller node's control law (``uvs_core.control.
control_step``, ``ControlConfig.paper()``) and records, per step, the
distance to the target, ||J_hat - J*||_F, the condition number and the
positive-definiteness criterion J* pinv(J_hat) > 0. ``summarize`` turns
those records into the paper's numbers: success averaged over thresholds,
binned by initial distance (Tables I-II), and the Jacobian analyses
(Figures 4-6). ``uvs benchmark`` (uvs_bringup) orchestrates data, training,
workers, files and plots around these functions. The metrics and ``summarize`` live in
``uvs_core.metrics`` and are re-exported here.

Shapes: ``B`` trajectories, ``T`` control steps, ``m`` task dimension, ``k``
active joints. Units: task units (m or px), rad, s. No torch, no plotting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from uvs_core.control import (
    ControlConfig,
    condition_number,
    control_step,
    task_rank,
)
from uvs_core.metrics import (
    QUANTILES,
    bin_indices,
    binned_success,
    positive_definite,
    summarize,
    task_distance,
    threshold_success,
    tracking_metrics,
)
from uvs_core.sim import Simulation
from uvs_core.tasks import POSE_METRES_PER_RAD
from uvs_core.tasks import error_fn as _error_fn

__all__ = [
    "PROTOCOLS", "PROTOCOL_VARIANTS", "PAPER_START", "DESIGN_START", "protocol", "PAPER_TABLES",
    "PAPER_LABELS", "Protocol", "Rollout", "BatchedBroyden",
    "batched", "task_distance", "threshold_success", "bin_indices", "binned_success",
    "positive_definite", "rollout", "summarize", "QUANTILES", "SINGULAR_CONDITION",
    "Tracking", "tracking_rollout", "tracking_metrics", "POSE_METRES_PER_RAD",
]

#: J* with a larger condition number counts as singular for the criterion J* J_hat+ > 0
SINGULAR_CONDITION = 1e8


@dataclass(frozen=True)
class Protocol:
    """The paper's evaluation protocol for one task (paper IV).

    samples: babbling samples (seed ``data_seed``); epochs: training epochs
    of the learned estimators (None: the estimator's default).
    thresholds: success thresholds ``start..stop`` step ``step`` (task units),
        success is averaged over them.
    bin_edges: initial-distance bins [e_i, e_i+1); distances at or beyond the
        last edge form an extra, open bin.
    distance: "euclidean" (|x* - x|, for multi-point the norm of the stacked
        12-vector) or "sum_of_points" (sum of the 3-D distances of the task's
        points).
    alt_distance: a second distance also reported (None: none).
    steps: control steps per trajectory; dt: s per step.
    start: (n,) rad start pose of babbling and servoing (None: the task's home).
    velocity_cap: rad/s, the joint speed cap of servoing and babbling (None:
        the robot's limits); velocity_mode "scale" (whole vector, in the
        control law) or "clip" (per joint, in the simulation only, as the
        reference code); joint_limits "clip", "mask" or "halt" (rollout).
    ou_theta, ou_sigma, ou_dt: the babbling OU process (ou_dt None: dt);
        horizon: samples per babbling trajectory.
    variant: which reading of the paper this is (PROTOCOL_VARIANTS).
    """

    task: str
    samples: int
    epochs: int | None
    thresholds: tuple[float, float, float]
    bin_edges: tuple[float, ...]
    distance: str = "euclidean"
    alt_distance: str | None = None
    units: str = "m"
    targets: int = 110
    seeds: int = 10
    steps: int = 100
    dt: float = 0.05
    data_seed: int = 0
    horizon: int = 100
    start: tuple[float, ...] | None = None
    velocity_cap: float | None = 1.22
    velocity_mode: str = "scale"
    joint_limits: str = "clip"
    ou_theta: float = 0.15
    ou_sigma: float = 0.2
    ou_dt: float | None = None
    variant: str = "design"

    @property
    def threshold_values(self) -> np.ndarray:
        """(P,) thresholds in task units, start..stop inclusive."""
        start, stop, step = self.thresholds
        count = int(round((stop - start) / step)) + 1
        return start + step * np.arange(count)

    def start_for(self, n: int | None = None) -> np.ndarray | None:
        """(n,) rad start pose, or None (the task's home): also None when ``start`` is
        the Gen3's and the robot has another number of joints ``n``."""
        if self.start is None or (n is not None and len(self.start) != n):
            return None
        return np.asarray(self.start, dtype=float)

    def babble_options(self, n: int | None = None) -> dict:
        """Keyword arguments of uvs_core.babble.babble for this protocol's data (n: the
        robot's joint count, see start_for)."""
        return {"horizon": self.horizon, "seed": self.data_seed, "dt": self.dt,
                "theta": self.ou_theta, "sigma": self.ou_sigma, "ou_dt": self.ou_dt,
                "start": self.start_for(n),
                "velocity_limits": self.velocity_cap, "velocity_mode": self.velocity_mode,
                "limit_mode": "mask" if self.joint_limits == "mask" else "clip"}

    def rollout_options(self, n: int | None = None) -> dict:
        """Keyword arguments of :func:`rollout` for this protocol (n: see start_for)."""
        return {"steps": self.steps, "dt": self.dt, "joint_limits": self.joint_limits,
                "distance": self.distance, "alt_distance": self.alt_distance,
                "start": self.start_for(n),
                "velocity_cap": self.velocity_cap, "velocity_mode": self.velocity_mode}


#: The reference code's start pose (KinovaEnv.reset), rad
PAPER_START = (0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0)

#: DESIGN.md's summary's start pose: the straight Gen3 (all joints zero), rad
DESIGN_START = (0.0,) * 7

_DESIGN = {
    "single_point": Protocol("single_point", 100_000, 30, (0.001, 0.1, 0.001),
                             (0.0, 0.5, 1.0, 1.5, 2.0), start=DESIGN_START),
    # The sum of the 4 point distances, with the Euclidean norm of the stacked
    # 12-vector beside it.
    "multi_point": Protocol("multi_point", 200_000, 40, (0.001, 0.25, 0.001),
                            (0.0, 1.0, 2.0, 3.0, 4.0), distance="sum_of_points",
                            alt_distance="euclidean", start=DESIGN_START),
    # No paper protocol in simulation (Table III is on the real arm): 1..100 px
    # thresholds and 100 px bins over the 640x480 image.
    "visual_servo": Protocol("visual_servo", 10_000, 30, (1.0, 100.0, 1.0),
                             (0.0, 100.0, 200.0, 300.0, 400.0), units="px"),
    # Position and orientation (no protocol in the paper): success at threshold t when
    # the position error < t AND the angle < t / POSE_METRES_PER_RAD (1 mm and 0.01 rad
    # up to 10 cm and 1 rad), averaged over t; single point's bins and data sizes. The
    # position alone is reported beside it.
    "pose": Protocol("pose", 100_000, 30, (0.001, 0.1, 0.001), (0.0, 0.5, 1.0, 1.5, 2.0),
                     distance="pose", alt_distance="position", start=DESIGN_START),
}

# The conventions of the paper's reference code (github.com/Mi-Przystupa/
# neural_jacobian_estimation; see docs/benchmarks.md for where each is):
# 200-step episodes from [0, .5, 0, -.5, 0, .5, 0]; each joint clipped to
# 1.22 rad/s in the simulator, none in the control law; joints masked 10 steps
# before a limit; OU babbling x <- x + 0.15 (0 - x) + N(0, 1) (no time step);
# multi-point distance the norm of the stacked 12-vector.
_PAPER_CODE = dict(steps=200, start=PAPER_START, velocity_mode="clip", joint_limits="mask",
                   ou_sigma=1.0, ou_dt=1.0, variant="paper")

#: protocol variant -> task -> Protocol. "paper" (default): the reference
#: code's conventions; "design": the summary in DESIGN.md (100 steps from
#: all-zero joints, OU sigma 0.2 with dt, whole-vector velocity cap, clipped
#: positions), kept for comparison with earlier uvs results.
PROTOCOL_VARIANTS: dict[str, dict[str, Protocol]] = {
    "paper": {
        "single_point": replace(_DESIGN["single_point"], **_PAPER_CODE),
        "multi_point": replace(_DESIGN["multi_point"], distance="euclidean",
                               alt_distance="sum_of_points", **_PAPER_CODE),
        # Visual servoing (no simulation protocol in the paper) keeps its own
        # start (a straight arm is singular in the image) and clips positions:
        # with only joints 2 and 4 to move, the mask, which stops a joint
        # 10 * 1.22 * 0.05 = 0.61 rad before its limit while the command is
        # at full speed, leaves every target beyond that unreachable (TJ: 9 %
        # in the 300-400 px bin). The rest follows the reference code.
        "visual_servo": replace(_DESIGN["visual_servo"],
                                **{**_PAPER_CODE, "joint_limits": "clip", "start": None}),
        "pose": replace(_DESIGN["pose"], **_PAPER_CODE),
    },
    "design": _DESIGN,
}

#: the default variant's protocols, task -> Protocol
PROTOCOLS: dict[str, Protocol] = PROTOCOL_VARIANTS["paper"]


def protocol(task: str, variant: str = "paper") -> Protocol:
    """The Protocol of ``task`` in ``variant``; ValueError naming the choices."""
    if variant not in PROTOCOL_VARIANTS:
        raise ValueError(f"unknown protocol variant {variant!r}; "
                         f"choose from {', '.join(PROTOCOL_VARIANTS)}")
    table = PROTOCOL_VARIANTS[variant]
    if task not in table:
        raise ValueError(f"no protocol for task {task!r}; choose from {', '.join(table)}")
    return table[task]


#: the paper's row labels, in its table order (and nk_adapt's, which is not the paper's)
PAPER_LABELS = {"broyden": "Broyden", "llknn": "LL-KNN", "nj": "NJ", "binj": "Bi-NJ",
                "nk_relu": "Relu-NK", "nk_tanh": "Tanh-NK", "nk_adapt": "NK-adapt",
                "nk_ens": "NK-ensemble", "tj": "TJ"}

#: Tables I and II: success % per initial-distance bin, then the total
PAPER_TABLES: dict[str, dict[str, tuple[float, ...]]] = {
    "single_point": {
        "broyden": (99.91, 61.52, 35.49, 3.37, 47.84),
        "llknn": (92.29, 87.11, 79.97, 60.00, 81.58),
        "nj": (100.00, 92.96, 82.89, 59.77, 85.70),
        "binj": (99.74, 87.92, 73.29, 48.86, 78.57),
        "nk_relu": (99.13, 89.83, 84.91, 72.84, 86.76),
        "nk_tanh": (100.00, 96.28, 91.94, 89.49, 94.07),
        "tj": (100.00, 97.89, 94.27, 90.93, 95.81),
    },
    "multi_point": {
        "broyden": (38.45, 24.59, 10.50, 1.60, 16.78),
        "llknn": (59.78, 54.93, 45.82, 30.01, 48.18),
        "nj": (63.88, 50.04, 35.56, 24.00, 41.66),
        "binj": (89.54, 72.45, 59.13, 38.55, 63.79),
        "nk_relu": (68.10, 52.71, 42.80, 20.81, 45.61),
        "nk_tanh": (85.82, 76.44, 64.08, 49.21, 68.41),
        "tj": (81.78, 91.94, 82.40, 78.79, 85.27),
    },
}


# ------------------------------------------------------- batched estimators
class BatchedBroyden:
    """B independent Broyden estimators stepped together; same numbers as B
    ``uvs_core.estimators.classical.Broyden`` instances (same j0, alpha, min_motion).

    jacobian: (B, m, k). update(qa (B, k), x (B, m)) applies, per trajectory,
    J <- J + alpha (dx - J dq) dq^T / (dq^T dq), skipping steps with
    |dq| < min_motion (the anchor stays, as in the class).
    """

    def __init__(self, j0: np.ndarray, batch: int, alpha: float = 1.0,
                 min_motion: float = 1e-6, error=None) -> None:
        self.error = error      # the task's error (x_prev, x) -> dx; None: x - x_prev
        self.j0 = np.asarray(j0, dtype=float)
        self.batch = int(batch)
        self.alpha = float(alpha)
        self.min_motion = float(min_motion)
        self.reset()

    @classmethod
    def from_estimator(cls, est, batch: int) -> BatchedBroyden:
        """B copies of a (fitted) Broyden estimator's initial state."""
        return cls(est.j0, batch, alpha=float(est.params["alpha"]),
                   min_motion=float(est.params["min_motion"]), error=_error_fn(est.task))

    def reset(self) -> None:
        """All trajectories back to j0, no previous sample."""
        m, k = self.j0.shape
        self.jacobian = np.broadcast_to(self.j0, (self.batch, m, k)).copy()
        self._q_prev = np.zeros((self.batch, k))
        self._x_prev = np.zeros((self.batch, m))
        self._has_prev = np.zeros(self.batch, dtype=bool)

    def update(self, qa: np.ndarray, x: np.ndarray) -> None:
        """One Broyden step per trajectory from qa (B, k) rad and x (B, m)."""
        qa = np.asarray(qa, dtype=float)
        x = np.asarray(x, dtype=float)
        dq = qa - self._q_prev
        dq2 = np.einsum("bk,bk->b", dq, dq)
        moved = self._has_prev & (dq2 >= self.min_motion ** 2)
        if moved.any():
            j = self.jacobian[moved]
            d = dq[moved]
            dx = (x[moved] - self._x_prev[moved] if self.error is None
                  else self.error(self._x_prev[moved], x[moved]))
            resid = dx - (j @ d[:, :, None])[:, :, 0]
            self.jacobian[moved] = j + (self.alpha / dq2[moved])[:, None, None] * (
                resid[:, :, None] * d[:, None, :])
        anchor = ~self._has_prev | moved
        self._q_prev[anchor] = qa[anchor]
        self._x_prev[anchor] = x[anchor]
        self._has_prev |= anchor

    def estimate_batch(self, qa: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """(B, m, k) the current Jacobians (qa and x unused: the state is the estimate)."""
        return self.jacobian.copy()


class _Stateless:
    """An estimator without online state: estimate_batch over the batch."""

    def __init__(self, est) -> None:
        self.est = est

    def reset(self) -> None:
        self.est.reset()

    def update(self, qa, x) -> None:
        pass

    def estimate_batch(self, qa, x=None):
        return self.est.estimate_batch(qa, x)


class _PerInstance:
    """B deep copies of an online estimator without a batch mode."""

    def __init__(self, est, batch: int) -> None:
        import copy

        self.items = [copy.deepcopy(est) for _ in range(int(batch))]

    def reset(self) -> None:
        for e in self.items:
            e.reset()

    def update(self, qa, x) -> None:
        for e, q, xx in zip(self.items, qa, x):
            e.update(q, xx)

    def estimate_batch(self, qa, x=None):
        return np.stack([e.estimate(q) for e, q in zip(self.items, qa)])


def batched(est, batch: int):
    """A batch view of ``est`` for B trajectories: reset(), update(qa (B, k), x (B, m)),
    estimate_batch(qa (B, k), x) -> (B, m, k).

    What the estimator's registry spec declares decides
    (uvs_core.estimators.registry): one with ``batched_update`` provides its
    own ``batch_view(batch)`` (Broyden's BatchedBroyden, nk_adapt's); another
    ``online`` one gets B copies; a stateless one is called with the whole
    batch. An estimator that is not registered under its ``name`` is
    ValueError.
    """
    from uvs_core.estimators import estimator_spec

    spec = estimator_spec(est.name)
    if spec.batched_update:
        return est.batch_view(batch)
    if spec.online:
        return _PerInstance(est, batch)
    return _Stateless(est)


# ------------------------------------------------------------------ rollout
@dataclass
class Rollout:
    """Records of B trajectories of T steps.

    distance: (B, T + 1) task units, before each step and after the last.
    frobenius: (B, T) ||J_hat - J*||_F, task units/rad, at each visited configuration.
    condition: (B, T) condition number of J_hat (over task_rank singular values).
    positive_definite: (B, T) bool criterion, None when m > rank (multi-point).
        Steps where J* itself is singular (condition number above
        ``SINGULAR_CONDITION``, e.g. the straight arm at the start pose) count
        as meeting it: no estimate can satisfy it there, so they say nothing
        about the estimator. ``pd_undefined`` (B, T) marks them.
    halted: (B, T) bool, the control law zeroed the command.
    x_final: (B, m); targets: (B, m).
    """

    distance: np.ndarray
    frobenius: np.ndarray
    condition: np.ndarray
    positive_definite: np.ndarray | None
    halted: np.ndarray
    x_final: np.ndarray
    targets: np.ndarray
    alt_distance: np.ndarray | None = field(default=None)
    pd_undefined: np.ndarray | None = field(default=None)


def _check_rollout_modes(joint_limits: str, velocity_mode: str, velocity_cap) -> None:
    """ValueError for an unknown joint-limit or velocity mode (rollout's options)."""
    if joint_limits not in ("clip", "halt", "mask"):
        raise ValueError(f"joint_limits must be 'clip', 'mask' or 'halt', got {joint_limits!r}")
    if velocity_mode not in ("scale", "clip"):
        raise ValueError(f"velocity_mode must be 'scale' or 'clip', got {velocity_mode!r}")
    if velocity_mode == "clip" and velocity_cap is None:
        raise ValueError("velocity_mode 'clip' needs a velocity_cap")


def rollout(task, estimator, targets: np.ndarray, steps: int = 100, dt: float = 0.05,
            config: ControlConfig | None = None, joint_limits: str = "clip",
            distance: str = "euclidean", alt_distance: str | None = None,
            start: np.ndarray | None = None, velocity_cap: float | None = 1.22,
            velocity_mode: str = "scale", tracker_noise=None,
            noise_seed: int = 0) -> Rollout:
    """Servo B arms from ``start`` to ``targets`` (B, m) for ``steps`` steps.

    Each step, per trajectory, as the estimator service and controller node do:
    the estimator is updated with (qa, x) (online estimators), J_hat = estimate
    at qa, qdot = control_step(J_hat, x, x*, qa, config, ...), then
    Simulation.step(qdot). The estimator is reset first.

    start: (n,) rad (default the task's home).
    config: the control law's options (default ControlConfig.paper(dt), its
        speed cap ``velocity_cap`` in mode "scale" and none in mode "clip").
    velocity_mode: "scale": the control law caps the command at
        ``velocity_cap`` (None: no cap) and the robot's limits as a whole
        vector, the controller node's behaviour; "clip": the control law
        leaves it alone and the simulation clips each joint to
        ``velocity_cap``, the paper's reference simulator.
    joint_limits: "clip" (positions are clipped at the limits, the command is
        not checked), "mask" (the reference simulator: a joint 10 steps from a
        limit at its commanded speed is not moved; Simulation's limit_mode) or
        "halt" (as the controller node: control_step zeroes a command that
        would pass a limit).
    distance, alt_distance: see task_distance.
    tracker_noise: a uvs_core.tracker_noise.TrackerNoise (tasks with a camera): the
        estimator and the control law see x as that noisy tracker reports it
        (generator seeded with ``noise_seed``); distances are of the true x.
    """
    _check_rollout_modes(joint_limits, velocity_mode, velocity_cap)
    if config is None:
        cap = math.inf if velocity_mode == "clip" or velocity_cap is None else velocity_cap
        config = replace(ControlConfig.paper(dt=dt), max_joint_velocity=cap)
    targets = np.asarray(targets, dtype=float)
    b = targets.shape[0]
    robot = task.robot
    if velocity_mode == "clip":
        sim = Simulation(task, dt=dt, batch=b, velocity_limits=velocity_cap,
                         velocity_mode="clip",
                         limit_mode="mask" if joint_limits == "mask" else "clip")
        velocity_limits = None
    else:
        sim = Simulation(task, dt=dt, batch=b,
                         limit_mode="mask" if joint_limits == "mask" else "clip")
        velocity_limits = robot.velocity_limits[task.active]
    x = sim.reset(start)
    lower = robot.lower[task.active] if joint_limits == "halt" else None
    upper = robot.upper[task.active] if joint_limits == "halt" else None
    rank = task_rank(task)
    with_pd = task.m <= rank
    est = batched(estimator, b)
    est.reset()
    observe = _observer(task, tracker_noise, noise_seed)
    seen = None

    dist = np.empty((b, steps + 1))
    alt = np.empty((b, steps + 1)) if alt_distance else None
    frob = np.empty((b, steps))
    cond = np.empty((b, steps))
    pd = np.empty((b, steps), dtype=bool) if with_pd else None
    pd_undefined = np.zeros((b, steps), dtype=bool) if with_pd else None
    halted = np.empty((b, steps), dtype=bool)
    for t in range(steps):
        qa = sim.qa
        dist[:, t] = task_distance(x, targets, distance)
        if alt is not None:
            alt[:, t] = task_distance(x, targets, alt_distance)
        seen = x if observe is None else observe(x, seen)
        est.update(qa, seen)
        j_hat = np.asarray(est.estimate_batch(qa, seen), dtype=float)
        j_true = task.jacobian(qa)
        with np.errstate(invalid="ignore"):
            frob[:, t] = np.sqrt(np.sum((j_hat - j_true) ** 2, axis=(1, 2)))
        if pd is not None:
            undefined = ~(condition_number(j_true, rank) < SINGULAR_CONDITION)
            pd_undefined[:, t] = undefined
            pd[:, t] = positive_definite(j_true, j_hat) | undefined
        qdot, info = control_step(j_hat, seen, targets, qa, config, lower, upper,
                                  velocity_limits=velocity_limits, rank=rank,
                                  error_fn=_error_fn(task))
        cond[:, t] = info.condition
        halted[:, t] = info.halted
        x = sim.step(qdot).x
    dist[:, steps] = task_distance(x, targets, distance)
    if alt is not None:
        alt[:, steps] = task_distance(x, targets, alt_distance)
    return Rollout(distance=dist, frobenius=frob, condition=cond, positive_definite=pd,
                   halted=halted, x_final=x, targets=targets, alt_distance=alt,
                   pd_undefined=pd_undefined)


def _observer(task, noise, seed: int):
    """observe(x (B, 2) px, last (B, 2) | None) -> (B, 2) px of a noisy tracker, or None
    for a perfect one; ValueError for a task without a camera."""
    if noise is None or not noise.active:
        return None
    from uvs_core.tracker_noise import observe_batch

    camera = getattr(task, "camera", None)
    if camera is None or task.m != 2:
        raise ValueError(f"tracker noise needs a camera task, not {task.name!r}")
    rng = np.random.default_rng(seed)
    return lambda x, last: observe_batch(noise, rng, x, last, camera.width, camera.height)


# ------------------------------------------------------- moving targets
@dataclass
class Tracking:
    """Records of B arms following moving targets for T steps.

    error: (B, T + 1) task units, |x*(t) - x(t)| before each step and after the last.
    x: (B, T + 1, m) the task states; targets: (B, T + 1, m) x*(t).
    halted: (B, T) bool, the control law zeroed the command.
    dt: s per step.
    """

    error: np.ndarray
    x: np.ndarray
    targets: np.ndarray
    halted: np.ndarray
    dt: float


def tracking_rollout(task, estimator, targets: np.ndarray,
                     velocities: np.ndarray | None = None, dt: float = 0.05,
                     config: ControlConfig | None = None, joint_limits: str = "mask",
                     start: np.ndarray | None = None, velocity_cap: float | None = 1.22,
                     velocity_mode: str = "clip") -> Tracking:
    """Servo B arms onto moving targets: step t commands
    control_step(J_hat, x, x*(t), ..., x_star_dot=ẋ*(t)), then the simulation steps.

    targets: (B, T + 1, m) x*(t) at t = 0, dt, ..., T dt (task units); velocities:
    (B, T + 1, m) ẋ*(t), task units/s, the feed-forward; None: feedback only (the
    law of the static benchmark, whose lag behind a target moving at v is v / gain).
    start: (n,) rad, every arm's start pose (None: the task's home). config,
    joint_limits, velocity_cap, velocity_mode: as :func:`rollout` (the paper
    protocol's: per-joint 1.22 rad/s clip in the simulation, joints masked before a
    limit). The estimator is reset first and updated with (qa, x) every step (Broyden
    learns online as in :func:`rollout`).
    """
    _check_rollout_modes(joint_limits, velocity_mode, velocity_cap)
    targets = np.asarray(targets, dtype=float)
    if targets.ndim != 3 or targets.shape[2] != task.m or targets.shape[1] < 2:
        raise ValueError(f"targets must have shape (B, T + 1, {task.m}) with T >= 1, "
                         f"got {targets.shape}")
    if velocities is not None:
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != targets.shape:
            raise ValueError(f"velocities must have the targets' shape {targets.shape}, "
                             f"got {velocities.shape}")
    if config is None:
        cap = math.inf if velocity_mode == "clip" or velocity_cap is None else velocity_cap
        config = replace(ControlConfig.paper(dt=dt), max_joint_velocity=cap)
    b, steps = targets.shape[0], targets.shape[1] - 1
    robot = task.robot
    limit_mode = "mask" if joint_limits == "mask" else "clip"
    if velocity_mode == "clip":
        sim = Simulation(task, dt=dt, batch=b, velocity_limits=velocity_cap,
                         velocity_mode="clip", limit_mode=limit_mode)
        velocity_limits = None
    else:
        sim = Simulation(task, dt=dt, batch=b, limit_mode=limit_mode)
        velocity_limits = robot.velocity_limits[task.active]
    x = sim.reset(start)
    lower = robot.lower[task.active] if joint_limits == "halt" else None
    upper = robot.upper[task.active] if joint_limits == "halt" else None
    rank = task_rank(task)
    est = batched(estimator, b)
    est.reset()
    xs = np.empty((b, steps + 1, task.m))
    halted = np.empty((b, steps), dtype=bool)
    for t in range(steps):
        qa = sim.qa
        xs[:, t] = x
        est.update(qa, x)
        j_hat = np.asarray(est.estimate_batch(qa, x), dtype=float)
        qdot, info = control_step(
            j_hat, x, targets[:, t], qa, config, lower, upper,
            velocity_limits=velocity_limits, rank=rank,
            x_star_dot=None if velocities is None else velocities[:, t],
            error_fn=_error_fn(task))
        halted[:, t] = info.halted
        x = sim.step(qdot).x
    xs[:, steps] = x
    error = np.linalg.norm(task.error(xs, targets), axis=2)
    return Tracking(error=error, x=xs, targets=targets, halted=halted, dt=float(dt))
