"""Joint-velocity babbling from home (paper IV): Ornstein-Uhlenbeck noise, or the
paper's real-arm mode, a servo controller toward random targets with noise.

OU (:func:`babble`, :class:`OUProcess`): every trajectory starts at the task's
home with the OU state at ``mu`` and runs ``horizon`` samples; all trajectories
are simulated at once.

Servo (:class:`ServoBabbler`, :func:`servo_law`): "commands with the true
Jacobian inverse Jacobian controller perturbed by small Gaussian noise
qdot + eps (eps ~ N(0, 0.1)) for 5 % of commands" (paper IV, the 7-DOF Kinova
data). The paper's N(0, 0.1) is read as a standard deviation of 0.1 rad/s per
joint.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from uvs_core.safety import DEFAULT_LOOKAHEAD, guard_batch
from uvs_core.sim import Simulation
from uvs_core.tasks import Task

__all__ = ["OUProcess", "ServoBabbler", "babble", "servo_law", "BABBLE_MODES"]

BABBLE_MODES = ("ou", "servo")


class OUProcess:
    """Ornstein-Uhlenbeck noise, the discretisation of the paper's code:

    x <- x + theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)

    size: (B, k) or k, the shape of one sample. Stationary std is
    sigma / sqrt(theta * (2 - theta * dt)), about sigma / sqrt(2 theta).
    rng: a numpy Generator or a seed.
    """

    def __init__(self, size: int | tuple[int, ...], theta: float = 0.15, sigma: float = 0.2,
                 dt: float = 0.05, mu: float = 0.0,
                 rng: np.random.Generator | int | None = None) -> None:
        self.size = (size,) if isinstance(size, int) else tuple(size)
        self.theta, self.sigma, self.dt, self.mu = float(theta), float(sigma), float(dt), mu
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.state = np.empty(self.size)
        self.reset()

    def reset(self) -> None:
        """Set the state back to mu (start of a trajectory)."""
        self.state = np.broadcast_to(np.asarray(self.mu, dtype=float), self.size).copy()

    def sample(self) -> np.ndarray:
        """Advance one step and return the new state, shape ``size`` (rad/s when used as
        joint velocities)."""
        noise = self.rng.standard_normal(self.size)
        self.state = (self.state + self.theta * (self.mu - self.state) * self.dt
                      + self.sigma * math.sqrt(self.dt) * noise)
        return self.state.copy()


def babble(task: Task, samples: int, horizon: int = 100, seed: int = 0, dt: float = 0.05,
           theta: float = 0.15, sigma: float = 0.2,
           progress: Callable[[int, int], None] | None = None,
           velocity_limits: np.ndarray | float | None = None,
           ou_dt: float | None = None, start: np.ndarray | None = None,
           velocity_mode: str = "scale", limit_mode: str = "clip",
           envelope=None, lookahead: float | None = None):
    """Collect ``samples`` (q, x) pairs by OU babbling in simulation.

    Trajectories of ``horizon`` samples start at ``start`` ((n,) rad; default
    the task's home, robot.home for the end-effector tasks); sample t of a
    trajectory is (q_t, x_t), recorded before the t-th command. Limits are
    kept by the simulation (``velocity_limits``, default the robot's;
    ``velocity_mode`` and ``limit_mode`` as in uvs_core.sim.Simulation).

    ou_dt: the OU process's time step (default ``dt``). The paper's reference
    code steps its OU process without a time step, x <- x + theta (mu - x) +
    sigma N(0, 1), which is ``ou_dt=1``: with sigma 1 the commands are about
    1.9 rad/s, mostly at the velocity limit.

    Returns a ``uvs_core.dataset.Dataset``: q (N, n) rad, x (N, m), traj (N,)
    int64, stamps (N,) int64 ns = sample index * dt, running across trajectories.
    progress: optional callable(done_samples, total_samples).
    envelope: a uvs_core.safety.Envelope to babble inside, as the driver enforces it
    on a real arm (joint look-ahead guard and tool-point envelope, ``lookahead`` s,
    default 0.5); None (default) babbles freely within the joint limits.
    """
    from uvs_core.dataset import Dataset  # sibling module written separately

    samples, horizon = int(samples), int(horizon)
    if samples < 1 or horizon < 1:
        raise ValueError("samples and horizon must be >= 1")
    n_traj = -(-samples // horizon)
    rng = np.random.default_rng(seed)
    sim = Simulation(task, dt=dt, batch=n_traj, velocity_limits=velocity_limits,
                     velocity_mode=velocity_mode, limit_mode=limit_mode)
    ou = OUProcess((n_traj, task.k), theta=theta, sigma=sigma,
                   dt=dt if ou_dt is None else ou_dt, rng=rng)

    n = task.robot.n
    q_all = np.empty((horizon, n_traj, n))
    x_all = np.empty((horizon, n_traj, task.m))
    x = sim.x if start is None else sim.reset(start)
    for t in range(horizon):
        q_all[t], x_all[t] = sim.q, x
        if t + 1 < horizon:
            command = ou.sample()
            if envelope is not None:
                full = np.zeros((n_traj, n))
                full[:, task.active] = command
                full = guard_batch(task.robot, envelope, sim.q, full,
                                   DEFAULT_LOOKAHEAD if lookahead is None else lookahead)
                command = full[:, task.active]
            x = sim.step(command).x
        if progress is not None:
            progress(min((t + 1) * n_traj, samples), samples)

    q = q_all.transpose(1, 0, 2).reshape(-1, n)[:samples]
    x = x_all.transpose(1, 0, 2).reshape(-1, task.m)[:samples]
    traj = np.repeat(np.arange(n_traj, dtype=np.int64), horizon)[:samples]
    stamps = np.arange(samples, dtype=np.int64) * int(round(dt * 1e9))
    return Dataset(q=q, x=x, traj=traj, stamps=stamps,
                   joint_names=list(task.robot.joint_names), task=task.name,
                   labels=list(task.labels), robot=task.robot.name)


def servo_law(task: Task, q: np.ndarray, x: np.ndarray, target: np.ndarray,
              gain: float = 1.0, max_speed: float = 1.22) -> np.ndarray:
    """The servo babbler's noise-free command: the true-Jacobian law of Eq. 1.

    q: (n,) rad, all joints; x: (m,) task state; target: (m,) x*, task units.
    -> (k,) rad/s for the task's active joints: gain * pinv(J(q)) (x* - x), scaled
    as a whole vector (direction kept) so that no joint exceeds ``max_speed`` rad/s
    (the paper's 1.22 cap).
    """
    jac = task.jacobian_from_q(np.asarray(q, dtype=float))
    qdot = gain * (np.linalg.pinv(jac) @ (np.asarray(target, float) - np.asarray(x, float)))
    peak = float(np.max(np.abs(qdot))) if qdot.size else 0.0
    if peak > max_speed:
        qdot = qdot * (max_speed / peak)
    return qdot


class ServoBabbler:
    """The paper's real-arm babbling, one command at a time.

    Each trajectory servos toward a random target x* (``task.sample_targets``: x of
    uniform joint samples; a point target outside ``envelope`` is drawn again); a
    new target is drawn at :meth:`reset` and whenever |x* - x| < ``reach_tolerance``
    (task units). Each command is :func:`servo_law`; with probability
    ``noise_fraction`` it gets eps ~ N(0, noise_std^2) per joint added.

    rng: a numpy Generator or a seed. envelope: a uvs_core.safety.Envelope or None.
    """

    def __init__(self, task: Task, gain: float = 1.0, max_speed: float = 1.22,
                 noise_fraction: float = 0.05, noise_std: float = 0.1,
                 reach_tolerance: float = 0.01, envelope=None,
                 rng: np.random.Generator | int | None = None) -> None:
        if not 0.0 <= noise_fraction <= 1.0:
            raise ValueError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
        if not (noise_std >= 0 and gain > 0 and max_speed > 0 and reach_tolerance >= 0):
            raise ValueError("noise_std and reach_tolerance must be >= 0, gain and max_speed > 0")
        self.task = task
        self.gain, self.max_speed = float(gain), float(max_speed)
        self.noise_fraction, self.noise_std = float(noise_fraction), float(noise_std)
        self.reach_tolerance = float(reach_tolerance)
        self.envelope = envelope
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.target = self._draw_target()

    def _draw_target(self) -> np.ndarray:
        """(m,) a random target inside the envelope (point tasks)."""
        for _ in range(1000):
            target = self.task.sample_targets(self.rng, 1)[0]
            if self.envelope is None or self.envelope.target_problem(
                    target, self.task.units) is None:
                return target
        raise ValueError(f"{self.task.name}: no random target inside the safety envelope "
                         "in 1000 draws; check the envelope")

    def reset(self) -> np.ndarray:
        """Start a trajectory: draw a new target; -> (m,) x*."""
        self.target = self._draw_target()
        return self.target

    def command(self, q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """q: (n,) rad, x: (m,) the state just read -> ((k,) rad/s command, whether noise
        was added). Draws a new target first when x has reached the current one."""
        if np.linalg.norm(self.target - np.asarray(x, float)) < self.reach_tolerance:
            self.target = self._draw_target()
        qdot = servo_law(self.task, q, x, self.target, self.gain, self.max_speed)
        noisy = bool(self.rng.random() < self.noise_fraction)
        if noisy:
            qdot = qdot + self.noise_std * self.rng.standard_normal(qdot.shape)
        return qdot, noisy
