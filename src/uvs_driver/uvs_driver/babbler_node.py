"""Node ``babbler``: joint-velocity babbling through the driver (paper IV).

For each of ``trajectories`` trajectories: command zero, call the driver's
home service (``home_service``), then record ``horizon`` samples (q, x),
answering each with the next command on ``joint_velocity_command`` (the task's
active joints; zeros elsewhere). ``mode`` chooses the commands:
- ``ou``: Ornstein-Uhlenbeck noise (theta, sigma), the paper's simulation data;
- ``servo``: the paper's real-arm data, the true-Jacobian servo law toward a
  random target per trajectory (a new one when reached), with Gaussian noise
  N(0, noise_std^2) added to a ``noise_fraction`` of the commands
  (uvs_core.babble.ServoBabbler; targets of point tasks inside ``envelope``).
Either way the driver guards every command (joint look-ahead, safety envelope).
Sample t is the state before the t-th command, as in ``uvs_core.babble``. When
done it commands zero and writes the samples with ``uvs_core.dataset.write_bag``
to ``output`` (the ``uvs collect`` schema: /joint_states, /task_state,
/babble/trajectory_start; plus /babble/command, the command answering each
sample, and in servo mode /babble/target); on an early shutdown it writes what
it has.

Topics (relative): subscribes ``joint_states`` and ``task_state`` (a sample
is a pair with identical header stamps), publishes ``joint_velocity_command``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from uvs_core.babble import BABBLE_MODES, OUProcess, ServoBabbler
from uvs_core.dataset import Dataset, DatasetError, write_bag
from uvs_core.tasks import TASK_NAMES, make_task
from uvs_interfaces.msg import TaskState
from uvs_ros import run_node
from uvs_ros.params import Param, ParamSpec, non_empty, non_negative, positive
from uvs_ros.qos import COMMAND_QOS, RECORD_QOS
from uvs_ros.robot_model import load_node_robot, robot_model_params, robot_model_reason

__all__ = ["BabblerNode", "main"]

_NS = 1_000_000_000
_HOUSEKEEPING_PERIOD = 0.02  # s, deadline checks
_PENDING = 200  # unpaired messages kept per topic


_ENVELOPES = ("robot", "box", "off")


# The babbler's parameters (uvs_ros.params): the run's shape is fixed at start
# (read-only); only the deadlines may change while it runs.
SPEC = ParamSpec({
    **robot_model_params("joints babbled, targets"),
    "task": Param("single_point",
        "Task whose active joints are babbled.",
        read_only=True, choices=TASK_NAMES),
    "rate": Param(20.0,
        "The driver's tick rate, Hz; the OU process steps dt = 1/rate.",
        range=(0.0, 1000.0), read_only=True, checks=(positive,)),
    "horizon": Param(100, "Samples per trajectory.", range=(1, 1_000_000),
        read_only=True),
    "trajectories": Param(10, "Trajectories to record.", range=(1, 1_000_000),
        read_only=True),
    "mode": Param("ou",
        "Commands: ou (Ornstein-Uhlenbeck noise) or servo (the true-Jacobian law toward "
        "random targets, noise on noise_fraction of them; the paper's real-arm data).",
        read_only=True, choices=BABBLE_MODES),
    "seed": Param(0, "Seed of the OU noise, or of the servo mode's targets and noise.",
        range=(0, 2**31 - 1),
        read_only=True),
    "theta": Param(0.15, "OU mean reversion, 1/s.", range=(0.0, 100.0),
        read_only=True, checks=(non_negative,)),
    "sigma": Param(0.2, "OU noise scale, rad/s/sqrt(s).", range=(0.0, 100.0),
        read_only=True, checks=(non_negative,)),
    "gain": Param(1.0, "servo: gain of the law, 1/s.", range=(0.0, 100.0),
        read_only=True, checks=(positive,)),
    "max_joint_velocity": Param(1.22,
        "servo: the law is scaled (direction kept) so no joint exceeds this, rad/s.",
        range=(0.0, 10.0),
        read_only=True, checks=(positive,)),
    "noise_fraction": Param(0.05,
        "servo: fraction of commands that get Gaussian noise (paper 5 %).",
        range=(0.0, 1.0), read_only=True),
    "noise_std": Param(0.1,
        "servo: standard deviation of that noise, rad/s per joint (paper N(0, 0.1)).",
        range=(0.0, 10.0),
        read_only=True, checks=(non_negative,)),
    "reach_tolerance": Param(0.01,
        "servo: a new target is drawn when |x* - x| falls below this, task units (m, px).",
        range=(0.0, 1000.0),
        read_only=True, checks=(non_negative,)),
    "envelope": Param("box",
        "servo: envelope the targets of point tasks must lie in: robot (the robot YAML's "
        "safety box and table), box (its box only), off. Commands are guarded by the "
        "driver's own envelope in both modes.",
        read_only=True, choices=_ENVELOPES),
    "output": Param("bags/babble", "Bag directory to write (rosbag2, MCAP).",
        read_only=True, checks=(non_empty,)),
    "overwrite": Param(False, "Replace an existing bag at output.",
        read_only=True),
    "home_service": Param("driver/home",
        "The driver's home service (std_srvs/Trigger).",
        read_only=True, checks=(non_empty,)),
    "service_timeout": Param(10.0,
        "Longest wait for the home service to appear, s.",
        range=(0.0, 3600.0),
        checks=(positive,)),
    "home_timeout": Param(60.0,
        "Longest wait for a home call to answer, s.",
        range=(0.0, 3600.0),
        checks=(positive,)),
    "sample_timeout": Param(5.0,
        "Longest wait for the next joint_states/task_state pair while recording, s.",
        range=(0.0, 3600.0),
        checks=(positive,)),
}, checks=(robot_model_reason,))


class BabblerNode(Node):
    """OU babbler. Keyword arguments go to rclpy's Node; the name defaults to ``babbler``.

    After the run (or a failure) ``done`` is set; ``error`` holds the reason of
    a failure (None on success) and ``bag_path`` the bag written, if any.
    """

    def __init__(self, node_name: str = "babbler", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        p = self._params = SPEC.declare(self)
        self.robot = load_node_robot(self, p["robot"])
        self.task = make_task(p["task"], self.robot)
        self.horizon = p["horizon"]
        self.trajectories = p["trajectories"]
        self.output = Path(p["output"]).expanduser()
        self._overwrite = p["overwrite"]
        self._deadlines = {name: p[name] for name in
                           ("service_timeout", "home_timeout", "sample_timeout")}
        self.mode = p["mode"]
        self._ou = OUProcess(self.task.k, theta=p["theta"], sigma=p["sigma"],
                             dt=1.0 / p["rate"], rng=p["seed"])
        self._servo: ServoBabbler | None = None
        if self.mode == "servo":
            envelope = {"robot": self.robot.envelope,
                        "box": self.robot.envelope.without_table(),
                        "off": None}[p["envelope"]]
            self._servo = ServoBabbler(
                self.task, gain=p["gain"], max_speed=p["max_joint_velocity"],
                noise_fraction=p["noise_fraction"], noise_std=p["noise_std"],
                reach_tolerance=p["reach_tolerance"], envelope=envelope, rng=p["seed"])
        self.noisy_commands = 0     # servo: commands that got noise

        # The home future's done callback may run beside the subscriptions
        # (MultiThreadedExecutor); every state transition holds this lock.
        self._lock = threading.RLock()
        self.done = threading.Event()
        self.error: str | None = None
        self.bag_path: Path | None = None
        self._written = False
        # Recorded samples: stamp ns, q (n,) robot joint order, x (m,), trajectory id.
        self._stamps: list[int] = []
        self._q: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self._traj: list[int] = []
        # The command answering each sample, (n,) rad/s robot order (NaN: none sent), and
        # the servo target at it (m,).
        self._commands: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._task_name: str | None = None
        self._labels: list[str] = list(self.task.labels)

        self._joints: dict[int, np.ndarray] = {}
        self._tasks: dict[int, tuple[np.ndarray, str, list[str]]] = {}
        self._order: np.ndarray | None = None       # robot joint i = joint_states[order[i]]
        self._names: list[str] = list(self.robot.joint_names)  # joint_states order

        self._state = "wait_service"
        self._deadline = time.monotonic() + self._deadlines["service_timeout"]
        self._traj_index = 0
        self._step = 0
        self._home_stamp = 0
        self._last_sample = 0.0

        self._command_pub = self.create_publisher(Float64MultiArray, "joint_velocity_command",
                                                  COMMAND_QOS)
        self._joint_sub = self.create_subscription(JointState, "joint_states",
                                                   self._on_joint_state, RECORD_QOS)
        self._task_sub = self.create_subscription(TaskState, "task_state",
                                                  self._on_task_state, RECORD_QOS)
        self._home_client = self.create_client(Trigger, p["home_service"])
        self._home_name = self.resolve_service_name(p["home_service"])
        self._timer = self.create_timer(_HOUSEKEEPING_PERIOD, self._housekeeping)
        SPEC.watch(self, self._params, self._apply_parameters)
        self.get_logger().info(
            f"babbling task {self.task.name} on {self.robot.name}: {self.trajectories} "
            f"trajectories x {self.horizon} samples at {p['rate']:g} Hz "
            + (f"(OU theta {p['theta']:g}, sigma {p['sigma']:g}, seed {p['seed']})"
               if self.mode == "ou" else
               f"(servo toward random targets, gain {p['gain']:g}, noise N(0, "
               f"{p['noise_std']:g}^2) on {p['noise_fraction']:.0%} of commands, seed "
               f"{p['seed']})")
            + f" -> {self.output}")

    # ------------------------------------------------------------------ parameters

    def _apply_parameters(self, changed: set[str]) -> None:
        for name in changed & set(self._deadlines):
            self._deadlines[name] = self._params[name]

    # ------------------------------------------------------------------ run

    @property
    def samples(self) -> int:
        """Samples recorded so far."""
        return len(self._stamps)

    def _publish(self, velocities: np.ndarray | None = None) -> None:
        """Command the task's active joints (``velocities: (k,) rad/s``), zero elsewhere."""
        command = np.zeros(len(self._names))
        if velocities is not None:
            order = self._order if self._order is not None else np.arange(self.robot.n)
            command[order[self.task.active]] = velocities
        self._command_pub.publish(Float64MultiArray(data=command.tolist()))

    def _housekeeping(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._state == "wait_service":
                if self._home_client.service_is_ready():
                    self._start_homing()
                elif now > self._deadline:
                    self._fail(f"service {self._home_name} did not appear within "
                               f"{self._deadlines['service_timeout']:g} s; is the driver running?")
            elif self._state == "homing" and now > self._deadline:
                self._fail(f"{self._home_name} did not answer within "
                           f"{self._deadlines['home_timeout']:g} s")
            elif (self._state == "recording"
                  and now - self._last_sample > self._deadlines["sample_timeout"]):
                self._fail(f"no joint_states/task_state pair with equal stamps for "
                           f"{self._deadlines['sample_timeout']:g} s; is the driver publishing?")

    def _start_homing(self) -> None:
        self._publish()
        self._state = "homing"
        self._deadline = time.monotonic() + self._deadlines["home_timeout"]
        future = self._home_client.call_async(Trigger.Request())
        future.add_done_callback(self._on_homed)

    def _on_homed(self, future) -> None:
        with self._lock:
            if self._state != "homing":
                return
            response = future.result()
            if response is None or not response.success:
                why = "no response" if response is None else response.message
                self._fail(f"{self._home_name} failed: {why}")
                return
            # States stamped after this answer were read after the driver homed.
            self._home_stamp = self.get_clock().now().nanoseconds
            self._ou.reset()
            if self._servo is not None:
                self._servo.reset()
            self._step = 0
            self._last_sample = time.monotonic()
            self._state = "recording"

    def _on_joint_state(self, msg: JointState) -> None:
        with self._lock:
            stamp = msg.header.stamp.sec * _NS + msg.header.stamp.nanosec
            if self._order is None:
                names = list(msg.name)
                missing = [n for n in self.robot.joint_names if n not in names]
                if missing:
                    self._fail(f"joint_states lacks joints {missing} of robot {self.robot.name}")
                    return
                self._names = names
                self._order = np.array([names.index(n) for n in self.robot.joint_names])
            self._joints[stamp] = np.asarray(msg.position, dtype=float)[self._order]
            self._pair(stamp)

    def _on_task_state(self, msg: TaskState) -> None:
        with self._lock:
            stamp = msg.header.stamp.sec * _NS + msg.header.stamp.nanosec
            self._tasks[stamp] = (np.asarray(msg.position, dtype=float), msg.task, list(msg.labels))
            self._pair(stamp)

    def _pair(self, stamp: int) -> None:
        if stamp in self._joints and stamp in self._tasks:
            q = self._joints.pop(stamp)
            x, task_name, labels = self._tasks.pop(stamp)
            self._on_sample(stamp, q, x, task_name, labels)
        for pending in (self._joints, self._tasks):
            while len(pending) > _PENDING:
                pending.pop(next(iter(pending)))

    def _on_sample(self, stamp: int, q: np.ndarray, x: np.ndarray, task_name: str,
                   labels: list[str]) -> None:
        if self._state != "recording" or stamp <= self._home_stamp:
            return
        if self._task_name is None:
            self._task_name, self._labels = task_name, labels or self._labels
        self._stamps.append(stamp)
        self._q.append(q)
        self._x.append(x)
        self._traj.append(self._traj_index)
        self._step += 1
        self._last_sample = time.monotonic()
        command = np.full(self.robot.n, np.nan)
        if self._servo is not None:
            self._targets.append(self._servo.target.copy())
        if self._step < self.horizon:
            if self._servo is not None:
                velocities, noisy = self._servo.command(q, x)
                self.noisy_commands += int(noisy)
            else:
                velocities = self._ou.sample()
            command[:] = 0.0
            command[self.task.active] = velocities
            self._commands.append(command)
            self._publish(velocities)
            return
        self._commands.append(command)
        self._publish()
        self._traj_index += 1
        self.get_logger().info(f"trajectory {self._traj_index}/{self.trajectories} recorded "
                               f"({self.samples} samples)")
        if self._traj_index < self.trajectories:
            self._start_homing()
        else:
            self._finish()

    def _finish(self) -> None:
        self._state = "done"
        self.write()
        self.done.set()

    def _fail(self, reason: str) -> None:
        self.get_logger().error(reason)
        self.error = reason
        self._state = "failed"
        self._publish()
        self.write()
        self.done.set()

    def write(self) -> Path | None:
        """Write the samples recorded so far to ``output`` once; None when there are none."""
        if self._written or not self._stamps:
            return None
        self._written = True
        dataset = Dataset(
            q=np.array(self._q), x=np.array(self._x), traj=np.array(self._traj),
            stamps=np.array(self._stamps), joint_names=list(self.robot.joint_names),
            task=self._task_name or self.task.name, labels=self._labels, robot=self.robot.name,
            commands=np.array(self._commands),
            targets=np.array(self._targets) if self._servo is not None else None)
        try:
            self.bag_path = write_bag(self.output, dataset, overwrite=self._overwrite)
        except (DatasetError, ValueError) as exc:
            self.get_logger().error(f"could not write {self.output}: {exc}")
            self.error = self.error or str(exc)
            return None
        self.get_logger().info(f"wrote {len(dataset)} samples in {self._traj_index} complete "
                               f"trajectories to {self.bag_path}")
        return self.bag_path

    @property
    def finished(self) -> threading.Event:
        """Set when the run ends (uvs_ros.run_node then exits with ``exit_code``)."""
        return self.done

    @property
    def exit_code(self) -> int:
        return 1 if self.error else 0

    def destroy_node(self) -> None:
        """Command zero (if the graph is still up), write what was recorded, destroy."""
        if self.context.ok() and hasattr(self, "_command_pub"):
            self._publish()
        if hasattr(self, "_stamps"):
            self.write()
        super().destroy_node()


def main(args=None) -> int:
    # Runs until the dataset is written (`finished`); bad parameters: one FATAL line.
    return run_node(BabblerNode, "babbler", args=args)


if __name__ == "__main__":
    raise SystemExit(main())
