"""Arm backends of the driver bridge: a kinematic simulation or a real Kinova Gen3.

No rclpy here: the driver node owns the ROS side and calls one of these.
Every backend speaks the same units and order:

- joint positions ``q: (n,) rad`` and commands ``qdot: (n,) rad/s`` in the
  order of ``joint_names`` (the order of ``/joint_states``);
- task state ``x: (m,)`` in the units of ``task_name`` (m or px), or None.

The driver node limits velocities, watches for stale commands and applies
``uvs_core.safety.guard_command`` (joint look-ahead, envelope) before calling
:meth:`Backend.command`. Every
failure of the arm or of the link to it is a :class:`BackendError`; no other
exception leaves a backend method for an arm-side reason.

The Gen3 backend, most of the code, is ``uvs_driver.gen3_backend``; ``make_backend``
builds either.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import numpy as np

from uvs_core.sim import Simulation
from uvs_core.tasks import Task

__all__ = [
    "BACKEND_NAMES",
    "GEN3_MAX_RATE",
    "KORTEX_INSTALL_HINT",
    "MAX_RATE",
    "Backend",
    "BackendError",
    "KortexMissingError",
    "Reading",
    "SimBackend",
    "make_backend",
    "unwrap_to",
    "wrap_to_pi",
]

BACKEND_NAMES = ("sim", "gen3")

#: Hz. High-level Kortex commands go over TCP and top out near 40 Hz (Kinova: the 1 kHz
#: low-level loop over UDP "is not meant to be run under Python").
GEN3_MAX_RATE = 40.0
#: Hz, the highest tick rate each backend accepts.
MAX_RATE = {"sim": 1000.0, "gen3": GEN3_MAX_RATE}

KORTEX_INSTALL_HINT = (
    "the gen3 backend needs Kinova's Kortex Python API (module 'kortex_api'), which is not on "
    "PyPI: download kortex_api-2.6.0.post3-py3-none-any.whl from Kinova's site "
    "(github.com/Kinovarobotics/kortex, 'Download links') and install it with "
    "'pip install --no-deps kortex_api-2.6.0.post3-py3-none-any.whl protobuf==3.20.3' "
    "(--no-deps: the wheel pins protobuf 3.5.1, which fails on Python >= 3.10). "
    "The PyPI packages named 'kortex' and 'proto-kortex' are unrelated"
)


class BackendError(RuntimeError):
    """The arm refused or failed a request; the message says which and why.

    kind: "refused" (the arm answered with an error; ``sub_code`` is Kortex's
    SubErrorCodes value), "timeout" (no answer in time), "connection" (the link is
    broken), "client" (the Kortex client library failed), "config" (the arm is set up
    differently from the robot description), "fault" (the arm is in fault),
    "supervisor" (the supervisor process could not start), or "" .
    """

    def __init__(self, message: str, kind: str = "", sub_code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.sub_code = sub_code


class KortexMissingError(BackendError, ImportError):
    """kortex_api is not installed; the message says how to install it."""


class Reading(NamedTuple):
    """One reading of the arm.

    q: (n,) rad, continuous joints unwrapped (no jump at +-pi between readings);
    x: (m,) task state, or None when unknown;
    qdot: (n,) rad/s, measured joint velocity (sim: the velocity it integrated);
    fault: why the arm does not take motion commands now (e.g. "ARMSTATE_IN_FAULT"),
    None when it does.
    """

    q: np.ndarray
    x: np.ndarray | None
    qdot: np.ndarray
    fault: str | None


def wrap_to_pi(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]. angle: (...,) rad -> (...,) rad."""
    angle = np.asarray(angle, dtype=float)
    return np.pi - np.mod(np.pi - angle, 2.0 * np.pi)


def unwrap_to(raw: np.ndarray, previous: np.ndarray | None,
              continuous: np.ndarray) -> np.ndarray:
    """Joint angles from wrapped encoder readings, continuous joints kept next to the
    previous reading (no jump between +pi and -pi).

    raw: (n,) rad, any wrapping; previous: (n,) rad or None (first reading);
    continuous: (n,) bool. Limited joints are wrapped to (-pi, pi]; a continuous joint
    becomes ``previous + wrap_to_pi(raw - previous)``, the nearest angle equal to
    ``raw`` modulo 2 pi. Returns (n,) rad.
    """
    q = wrap_to_pi(raw)
    if previous is None:
        return q
    follow = previous + wrap_to_pi(q - previous)
    return np.where(continuous, follow, q)


class Backend(abc.ABC):
    """One arm, commanded with joint velocities.

    Attributes:
        joint_names: (n,) joint names, the order of q and qdot.
        task_name: name carried by the task state (TaskState.task).
        labels: (m,) names of the components of x.
        has_faults: the arm has faults that ``clear_faults`` can clear.
        concurrent_home: ``home`` may run in one thread while ``read_state`` runs in
            another (a real arm moving home for seconds); otherwise the driver
            serialises ``home`` with its ticks.
        max_rate: Hz, the highest tick rate the arm can follow.
    """

    joint_names: tuple[str, ...] = ()
    task_name: str = ""
    labels: tuple[str, ...] = ()
    has_faults = False
    concurrent_home = False
    max_rate = MAX_RATE["sim"]

    @property
    def n(self) -> int:
        """Number of joints."""
        return len(self.joint_names)

    @abc.abstractmethod
    def read_state(self) -> Reading:
        """The arm now: positions, task state, measured velocities, fault."""

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Current state: (q (n,) rad, x (m,) or None when the task state is unknown)."""
        reading = self.read_state()
        return reading.q, reading.x

    @abc.abstractmethod
    def command(self, qdot: np.ndarray) -> None:
        """Hold joint velocities ``qdot: (n,) rad/s`` until the next command or stop."""

    def step(self, dt: float) -> None:  # noqa: B027 - a real arm moves by itself
        """Advance a simulated arm by ``dt`` s under the held command; no-op on real arms."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop all motion now (zero velocity)."""

    @abc.abstractmethod
    def home(self, timeout: float, q: np.ndarray | None = None) -> None:
        """Move to ``q: (n,) rad`` (default: the backend's own home pose) within
        ``timeout`` s; BackendError when it cannot."""

    def clear_faults(self) -> None:  # noqa: B027 - only real arms have faults
        """Clear the arm's faults; nothing to do for a simulated arm."""

    def set_tick_period(self, period: float) -> None:  # noqa: B027 - only real arms care
        """The driver ticks every ``period`` s from now on (RPC timeouts follow it)."""

    def close(self) -> None:
        """Stop and release the arm; safe to call twice."""
        self.stop()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SimBackend(Backend):
    """The kinematic simulation q(t + dt) = q(t) + dt * qdot of ``uvs_core.sim`` (paper IV-A).

    Commands are full-length (n,) vectors in ``joint_names`` order. A task with
    k < n active joints (visual_servo) keeps the others at its ``q_fixed``:
    :meth:`command` rejects (ValueError) a nonzero velocity on an inactive
    joint rather than silently dropping part of the command; the driver node
    checks this before calling, so the whole command is refused and logged.

    task: the Task simulated (x = task.x_from_q(q)). dt: s, default step.
    """

    concurrent_home = False

    def __init__(self, task: Task, dt: float = 0.05) -> None:
        self.task = task
        self.robot = task.robot
        self.joint_names = tuple(self.robot.joint_names)
        self.task_name = task.name
        self.labels = tuple(task.labels)
        self.active_mask = np.zeros(self.robot.n, dtype=bool)
        self.active_mask[task.active] = True
        self._sim = Simulation(task, dt=dt)
        self._qdot = np.zeros(self.robot.n)

    def read_state(self) -> Reading:
        """q (n,) rad and x (m,) of the model; qdot: the held command (what the kinematic
        simulation integrates)."""
        return Reading(self._sim.q[0].copy(), self._sim.x[0].copy(), self._qdot.copy(), None)

    def command(self, qdot: np.ndarray) -> None:
        qdot = np.asarray(qdot, dtype=float)
        if qdot.shape != (self.robot.n,):
            raise ValueError(f"command must have {self.robot.n} velocities, got {qdot.shape}")
        if not np.all(np.isfinite(qdot)):
            raise ValueError("command has NaN or Inf")
        if np.any(qdot[~self.active_mask] != 0.0):
            raise ValueError(f"task {self.task.name} does not drive joints "
                             f"{[n for n, a in zip(self.joint_names, self.active_mask) if not a]}")
        self._qdot = qdot.copy()

    def step(self, dt: float) -> None:
        """Integrate the held command for ``dt`` s (positions clipped to the joint limits)."""
        if dt != self._sim.dt:
            q = self._sim.q[0].copy()
            self._sim = Simulation(self.task, dt=dt)
            self._sim.reset(q)
        self._sim.step(self._qdot[self.task.active])

    def stop(self) -> None:
        self._qdot = np.zeros(self.robot.n)

    def home(self, timeout: float, q: np.ndarray | None = None) -> None:
        """Jump to ``q`` (default the task's home, ``task.q_fixed``) at once and stop."""
        self.stop()
        self._sim.reset(None if q is None else np.asarray(q, dtype=float))


def make_backend(name: str, task: Task, dt: float, **gen3) -> Backend:
    """Backend by name: "sim" (SimBackend(task, dt)) or "gen3" (Gen3Backend(joint names of
    the task's robot, its continuous joints and tool offset, tick period dt, **gen3)).
    ValueError on an unknown name."""
    if name == "sim":
        return SimBackend(task, dt)
    if name == "gen3":
        # Imported here: gen3_backend builds on this module's Backend, BackendError, etc.
        from uvs_driver.gen3_backend import Gen3Backend

        robot = task.robot
        gen3.setdefault("tool_offset", robot.tool_offset)
        return Gen3Backend(robot.joint_names, continuous=robot.continuous, tick_period=dt,
                           **gen3)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")

