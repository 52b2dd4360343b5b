"""Node ``controller``: the paper's Algorithm 1 every cycle, at ``rate`` Hz.

Each cycle, with a target x* set: take the newest joint positions q and task
state x, ask the Jacobian estimator service for J(q, x) (waiting at most
``estimator_timeout``), and command qdot = uvs_core.control.control_step(J,
x, x*, ...). Anything that makes the command unsafe (no answer in time, a
failed or non-finite answer, wrong dimensions, stale or missing states, a
lost marker, a singularity or a joint limit) commands zero and reports
HALTED with the reason.

Uncertainty: an estimator that reports its uncertainty u of J (EstimateJacobian's
``uncertainty``, dimensionless; nk_ens) scales the gain by 1 up to
``uncertainty_slowdown``, linearly down to 0 at ``uncertainty_halt``, and beyond it
commands zero and reports HALTED with reason ``uncertain (...)`` (no latch: it clears
with a new target or when u falls). NaN (unknown, every other estimator) leaves the
law unchanged; both thresholds default to .inf (off). ServoStatus carries u and the
gain's factor.

Faults latch: a halt caused by the estimator (unavailable, late, failed, a
malformed answer) or by stale or malformed joint/task states that lasts
``fault_latch_after`` s (default 1) holds the arm at zero until an operator
acts (``~/resume``, ``~/set_target``, a ``target`` message that moves x*
beyond the convergence tolerance, or ``~/cancel``), even after
the cause has cleared: ServoStatus.latched is true and the reason ends with
`` [latched: ...]`` (the current cause, or ``cause cleared`` and the one that
latched). Shorter faults (late answers on a loaded machine), a lost marker,
no states yet at start, a singularity or a joint limit halt without
latching: servoing resumes by itself once they clear. When no request has
been answered for ``fault_latch_after`` s the reason is ``estimator
unavailable`` (a killed estimator's service stays discovered for DDS's 20 s
lease, so "service ready" alone cannot tell).

Targets are checked against the safety envelope (``envelope``: the robot
YAML's ``safety`` box and table, the box only (default: the sim's tasks sample
targets below the table), or off; point tasks, each point) and refused with
the reason; image targets (px) cannot be checked here, the driver guards the
commands of every task.

Topics (relative names, so a namespace applies):
- subscribes ``joint_states`` (sensor_msgs/JointState) and ``task_state``
  (uvs_interfaces/TaskState; valid=false means the marker is lost), both on
  uvs_ros.qos.LATEST_QOS, best-effort depth 1 (matches reliable and sensor-data
  publishers);
- subscribes ``target`` (uvs_interfaces/TaskState): each message updates x*
  (a moving target); the convergence bookkeeping restarts only when the
  target moved by more than ``convergence_tolerance`` (for a target with a
  velocity: from where that velocity said it would be). A moving target's
  velocity ẋ* (``target_velocity``: the message's ``velocity`` field, or
  estimated from successive targets, or off) is fed forward, qdot = J+ (ẋ* +
  gain (x* - x)), and x* is extrapolated by ẋ* times the message's age, while
  the message is at most ``target_velocity_timeout`` old (then the target is held
  still where it was). A moving target within the tolerance reports CONVERGED
  and is still followed (the command is not zeroed), and is never STALLED (a
  steady tracking error is no stall). A target from this
  topic can be lost: a message with valid=false (a tracked target marker out
  of sight), or no message for ``target_timeout`` s (when > 0), commands zero
  and reports HALTED ``target lost`` / ``target stale`` until a valid target
  arrives (no latch); a target set by ``~/set_target`` never goes stale;
- publishes ``joint_velocity_command`` (std_msgs/Float64MultiArray, rad/s,
  one per joint in /joint_states order, zero for joints the task does not
  drive), every cycle, zero when idle, halted or converged;
- publishes ``~/status`` (uvs_interfaces/ServoStatus) every cycle and
  ``~/markers`` (visualization_msgs/MarkerArray, in ``frame_id``).

Services: ``~/set_target`` (uvs_interfaces/SetTarget: checks length,
finiteness and the envelope; always restarts the bookkeeping, even for the
same target, and clears a latched halt), ``~/cancel`` (std_srvs/Trigger:
forget the target, idle, zero), ``~/resume`` (std_srvs/Trigger: clear a
latched halt, keep the target).
Client: ``estimate_jacobian`` (uvs_interfaces/EstimateJacobian). Its request pairs x
with the joint positions x was measured at: the joint state whose header stamp equals
the task state's (the driver stamps both with one reading; the sim camera stamps its
frame with the joint state it drew, and the tracker keeps it), else the nearest in the
last second. An online estimator (Broyden) learns from successive (q, x) pairs, and a
q one message newer than its x makes a secant of noise (measured: docs/parity.md).
The control law itself (joint limits) uses the newest joint state.

The control cycle runs on a thread of its own at ``rate`` (deadline-scheduled on a
monotonic clock), not in an executor callback: it blocks up to ``estimator_timeout``
on the estimator's answer, and a blocked executor worker makes rclpy's executors
re-offer queued callbacks in a busy loop (measured: 0.4-2.6 s stalls at 20 Hz,
benchmarks/servo_loop.py). The executor that spins the node (any kind; main()
uses a SingleThreadedExecutor) only delivers messages, service calls and the
estimator's answers.

The node is the ROS shell: parameters (uvs_control.params.SPEC), publishers,
subscriptions, services, the cycle thread, and the conversion of messages. What a cycle
decides is uvs_control.cycle.ServoCycle's, which imports no rclpy.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from uvs_control.cycle import STATE_NAMES, Answer, CycleOutput, JointReading, ServoCycle
from uvs_control.markers import servo_markers
from uvs_control.params import PARAMETERS, SPEC, validate_parameters
from uvs_control.pose_target import pose_target
from uvs_core.control import ControlConfig
from uvs_core.safety import Envelope
from uvs_core.tasks import make_task
from uvs_interfaces.msg import ServoStatus, TaskState
from uvs_interfaces.srv import EstimateJacobian, SetTarget
from uvs_ros import run_node
from uvs_ros.qos import COMMAND_QOS, LATCHED_QOS, LATEST_QOS, STATE_QOS
from uvs_ros.robot_model import load_node_robot

__all__ = ["ControllerNode", "PARAMETERS", "validate_parameters", "main"]

NODE_NAME = "controller"
_WARN_PERIOD = 1.0  # s between repeated warnings of one kind
MARKER_RATE = 20.0  # Hz, the most ~/markers is published (RViz needs no more)


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class ControllerNode(Node):
    """The servo controller; see the module docstring.

    Keyword arguments go to rclpy's Node (context, parameter_overrides,
    namespace, ...): ``ControllerNode(context=ctx, parameter_overrides=[...])``.
    Raises ValueError for invalid parameters (unknown task or robot, ...).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        values = self._values = SPEC.declare(self)
        self.robot = load_node_robot(self, values["robot"])
        self.task = make_task(values["task"], self.robot)
        self.envelope = {"robot": self.robot.envelope,
                         "box": self.robot.envelope.without_table(),
                         "off": Envelope()}[values["envelope"]]
        logger = self.get_logger()
        self.cycle = ServoCycle(self.robot, self.task, values, self.envelope,
                                info=logger.info, warning=logger.warning)
        # Markers are for people watching RViz: at most MARKER_RATE Hz whatever the control
        # rate (at 100 Hz they were a third of the cycle's work).
        self._last_markers = -float("inf")

        self._client_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._command_pub = self.create_publisher(
            Float64MultiArray, "joint_velocity_command", COMMAND_QOS)
        self._status_pub = self.create_publisher(ServoStatus, "~/status", STATE_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, "~/markers", LATCHED_QOS)
        self._joint_sub = self.create_subscription(
            JointState, "joint_states", self._on_joint_state, LATEST_QOS,
            callback_group=self._io_group)
        self._task_sub = self.create_subscription(
            TaskState, "task_state", self._on_task_state, LATEST_QOS,
            callback_group=self._io_group)
        self._target_sub = self.create_subscription(
            TaskState, "target", self._on_target, COMMAND_QOS, callback_group=self._io_group)
        self._target_pose_sub = self.create_subscription(
            PoseStamped, "target_pose", self._on_target_pose, COMMAND_QOS,
            callback_group=self._io_group)
        self._set_target_srv = self.create_service(
            SetTarget, "~/set_target", self._on_set_target, callback_group=self._io_group)
        self._cancel_srv = self.create_service(
            Trigger, "~/cancel", self._on_cancel, callback_group=self._io_group)
        self._resume_srv = self.create_service(
            Trigger, "~/resume", self._on_resume, callback_group=self._io_group)
        self._client = self.create_client(
            EstimateJacobian, "estimate_jacobian", callback_group=self._client_group)
        self._stop = threading.Event()
        self._cycle_thread = threading.Thread(target=self._run_cycles, name="uvs-controller-cycle",
                                              daemon=True)
        self._cycle_thread.start()
        SPEC.watch(self, self._values, self._apply_parameters)
        config = self.cycle.config
        logger.info(
            f"task {self.task.name} (m={self.task.m}, joints {self.cycle.active_names}), "
            f"{values['rate']:g} Hz, gain {values['gain']:g}, estimator "
            f"{self._client.srv_name}, tolerance {self.tolerance:g} {self.task.units}, "
            f"condition slowdown/halt {config.cond_slowdown:g}/{config.cond_halt:g}")

    # ------------------------------------------------------------------ parameters

    @property
    def control_config(self) -> ControlConfig:
        """The ControlConfig of the next cycle."""
        return self.cycle.config

    @property
    def tolerance(self) -> float:
        """Convergence tolerance in task units (the parameter, or the task default)."""
        return self.cycle.tolerance

    def _apply_parameters(self, changed: set[str]) -> None:
        self.cycle.apply({name: self._values[name] for name in changed})
        self.get_logger().info("parameters: " + ", ".join(
            f"{name}={self._values[name]}" for name in sorted(changed)))

    # ------------------------------------------------------------------ cycle thread

    def _run_cycles(self) -> None:
        """Call _cycle every 1/rate s until destroy_node(); a late cycle does not burst."""
        deadline = time.monotonic()
        while not self._stop.is_set():
            with self.cycle.lock:
                period = 1.0 / self.cycle.values["rate"]
            deadline += period
            now = time.monotonic()
            if deadline < now - period:         # more than a period behind: skip ahead
                deadline = now
            if self._stop.wait(max(0.0, deadline - now)):
                break
            if not self.context.ok():
                break
            try:
                self._cycle()
            except InvalidHandle:
                break                            # the node is being destroyed

    def destroy_node(self) -> None:
        self._stop.set()
        if self._cycle_thread.is_alive() and self._cycle_thread is not threading.current_thread():
            self._cycle_thread.join(timeout=2.0)
        super().destroy_node()

    def on_shutdown(self) -> None:
        """Last word before the process exits (uvs_ros.run_node): stop the cycle, then
        command zero, so the driver stops at once rather than after its watchdog."""
        self._stop.set()
        if self._cycle_thread.is_alive():
            self._cycle_thread.join(timeout=2.0)
        self._cancel()
        self._command_pub.wait_for_all_acked(Duration(seconds=0.5))

    # ------------------------------------------------------------------ inputs

    def _on_joint_state(self, msg: JointState) -> None:
        self.cycle.on_joint_state(JointReading(_stamp_ns(msg.header.stamp), tuple(msg.name),
                                               np.asarray(msg.position, dtype=float)),
                                  time.monotonic())

    def _on_task_state(self, msg: TaskState) -> None:
        self.cycle.on_task_state(_stamp_ns(msg.header.stamp),
                                 np.asarray(msg.position, dtype=float), msg.valid,
                                 time.monotonic())

    def _on_target(self, msg: TaskState) -> None:
        velocity = np.asarray(msg.velocity, dtype=float) if len(msg.velocity) else None
        header = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        ignored = self.cycle.topic_target(np.asarray(msg.position, dtype=float), msg.valid,
                                          velocity, header, time.monotonic())
        if ignored:
            self.get_logger().warning(f"target topic: ignored, {ignored}",
                                      throttle_duration_sec=_WARN_PERIOD)

    def _on_target_pose(self, msg: PoseStamped) -> None:
        """A tool pose target (geometry_msgs/PoseStamped, in the base frame ``frame_id``),
        converted to x* by the task (Task.x_from_pose); an operator's target, as
        ~/set_target's. Refused with a warning naming the reason otherwise."""
        target, problem = pose_target(self.task, msg, self._values["frame_id"])
        if problem is None:
            problem = self.cycle.target_problem(target)
        if problem:
            self.get_logger().warning(f"target_pose: ignored, {problem}",
                                      throttle_duration_sec=_WARN_PERIOD)
            return
        self.cycle.set_target(target)
        self.get_logger().info(f"target_pose: target set: "
                               f"{np.array2string(target, precision=4)}")

    def _on_set_target(self, request: SetTarget.Request, response: SetTarget.Response):
        target = np.asarray(request.target, dtype=float)
        problem = self.cycle.target_problem(target)
        if problem:
            response.success, response.message = False, problem
            return response
        self.cycle.set_target(target)
        response.success = True
        response.message = f"target set: {np.array2string(target, precision=4)} " \
                           f"{self.task.units}"
        self.get_logger().info(response.message)
        return response

    def _on_cancel(self, request: Trigger.Request, response: Trigger.Response):
        self._cancel()
        response.success, response.message = True, "target cancelled; idle, zero command"
        self.get_logger().info(response.message)
        return response

    def _on_resume(self, request: Trigger.Request, response: Trigger.Response):
        latched = self.cycle.resume()
        response.success = True
        response.message = (f"resumed after: {latched}" if latched
                            else "nothing latched; servoing as before")
        return response

    def _cancel(self) -> None:
        """Drop the target and command zero once."""
        count = self.cycle.cancel()
        self._command_pub.publish(Float64MultiArray(data=[0.0] * count))

    # ------------------------------------------------------------------ cycle

    def _ask(self, positions: np.ndarray, x: np.ndarray, timeout: float):
        """The estimator's Answer to (positions, x), None when none came within timeout,
        or why the service is unavailable (str); see uvs_control.cycle.Ask."""
        if not self._client.service_is_ready():
            return f"no service {self._client.srv_name}"
        request = EstimateJacobian.Request(joint_positions=positions.tolist(),
                                           task_position=x.tolist())
        answered = threading.Event()
        future = self._client.call_async(request)
        future.add_done_callback(lambda _: answered.set())
        if not answered.wait(timeout):
            self._client.remove_pending_request(future)
            future.cancel()
            return None
        response = future.result()
        if response is None:
            return Answer(estimator="", success=False, message="no response")
        return Answer(estimator=response.estimator, success=response.success,
                      message=response.message, rows=response.rows, cols=response.cols,
                      jacobian=response.jacobian, uncertainty=response.uncertainty)

    def _cycle(self) -> None:
        now = time.monotonic()
        # The status describes this cycle's inputs: stamped when the cycle started, not
        # after the estimator's answer (whose round trip varies).
        stamp = self.get_clock().now().to_msg()
        out = self.cycle.step(now, self._ask, time.monotonic)
        if out is None:
            return
        self._command_pub.publish(Float64MultiArray(data=out.command.tolist()))
        self._publish_status(out, stamp)
        if out.q is not None and now - self._last_markers >= 1.0 / MARKER_RATE:
            self._last_markers = now
            self._publish_markers(out, stamp)

    def _publish_markers(self, out: CycleOutput, stamp) -> None:
        target = out.target
        text = STATE_NAMES[out.state]
        if target is not None and out.x is not None:
            text += f" |e| {float(self.task.distance(out.x, target)):.4g} {self.task.units}"
        if out.estimator:
            text += f" [{out.estimator}, cond {out.condition:.3g}]"
        if out.reason:
            text += f"\n{out.reason}"
        pose = self.task.name == "pose" and target is not None
        self._marker_pub.publish(servo_markers(
            self.robot, out.q, target[:3] if pose else target, self.task.units,
            self._values["frame_id"], stamp, status_text=text,
            target_rotation=self.task.rotation(target) if pose else None))

    def _publish_status(self, out: CycleOutput, stamp) -> None:
        status = ServoStatus()
        status.header.stamp = stamp
        status.header.frame_id = self._values["frame_id"]
        status.state = out.state
        status.state_name = STATE_NAMES[out.state]
        status.reason = out.reason
        status.task = self.task.name
        status.estimator = out.estimator
        if out.target is not None and out.x is not None:
            status.error_norm = float(self.task.distance(out.x, out.target))
        status.condition_number = out.condition if np.isfinite(out.condition) \
            else float("inf")
        status.target = [] if out.target is None else out.target.tolist()
        status.position = [] if out.x is None else out.x.tolist()
        status.command = out.command.tolist()
        status.step = out.step
        status.latched = out.latched
        status.uncertainty = float(out.uncertainty)
        status.gain_scale = float(out.gain_scale)
        self._status_pub.publish(status)


def main(args=None) -> int:
    # The cycle runs on its own thread (see the module docstring); bad parameters: one
    # FATAL line, exit code 1.
    return run_node(ControllerNode, NODE_NAME, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
