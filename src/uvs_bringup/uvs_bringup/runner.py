# Over 600 lines: the Operator node and the two graphs it drives (ServoGraph in process,
# AttachedGraph over DDS) share its servo_to/follow protocol and its results.
"""The servo graph in one process: each rclpy node on an executor thread of its own.

This is the Python form of composition, for machines where `ros2 launch` is
not installed. Each node gets a SingleThreadedExecutor on its own thread, as it
would have its own process under `ros2 launch`: on one shared executor the
estimator's answers queued behind the camera's renders and the tracker's frames,
and on a loaded machine the controller's 40 ms estimator deadline passed (tens of
halts per target). rclpy 9.1.2's MultiThreadedExecutor is no alternative: it
starved this graph of its 20 Hz joint states for 0.3-0.8 s at a time (re-offering
queued callbacks in a busy loop; measured with benchmarks/servo_loop.py and
tests/test_controller_system.py). The controller's cycle runs on a thread of its
own in any case.

It starts exactly the nodes of `uvs_bringup.graph.servo_graph` (same classes, same
parameter files, same overrides and remappings as servo.launch.py), plus an operator
node that homes the arm, sets targets and watches the controller's status, and
optionally the built-in bag recorder. With ``target_source="marker"`` the operator
sets targets the way the paper's set-up did: it moves the sim camera's target marker
(``target_point``), and the target tracker's reading of it is the controller's target.
``AttachedGraph`` attaches the same operator to a graph that runs elsewhere (``ros2
launch``, a real arm): it needs only the graph's topics, services and parameter services.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PointStamped
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from std_srvs.srv import Trigger

from uvs_bringup.graph import (
    TOPIC_TYPES,
    GraphOptions,
    NodeSpec,
    config_robot,
    recorded_topics,
    servo_graph,
)
from uvs_bringup.recorder import BagRecorder, TopicCounter, message_class, wait_quiet
from uvs_core.paths import installed_dir
from uvs_interfaces.msg import ServoStatus
from uvs_interfaces.srv import SetTarget
from uvs_ros.qos import COMMAND_QOS, RECORD_QOS

TERMINAL = {ServoStatus.CONVERGED: "converged", ServoStatus.STALLED: "stalled",
            ServoStatus.HALTED: "halted"}


class GraphError(RuntimeError):
    """The graph could not be brought up or did not answer in time."""


@dataclass
class TargetResult:
    """One target servoed through the graph.

    target: (m,) x*, task units. initial_error, final_error: |x* - x| of the first and
    last status of this target, task units. steps: the controller's cycles since the
    target was set (ServoStatus.step); seconds: wall time until the outcome.
    outcome: converged | stalled | halted | timeout; reason: the controller's, if any.
    initial_position, final_position: (m,) x of the first and last status.
    cycles: statuses received for this target (one per control cycle); halted_cycles:
    of those, HALTED ones per kind of reason (see halt_kind); stalled_cycles: STALLED
    ones; held_cycles: cycles that servoed on a held Jacobian after a late estimator
    answer.
    times, errors: (T,) s since the target was set and |x* - x| of each status.
    """

    target: list[float]
    initial_error: float
    final_error: float
    steps: int
    seconds: float
    outcome: str
    reason: str = ""
    times: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    initial_position: list[float] = field(default_factory=list)
    final_position: list[float] = field(default_factory=list)
    cycles: int = 0
    halted_cycles: dict[str, int] = field(default_factory=dict)
    stalled_cycles: int = 0
    held_cycles: int = 0

    def summary(self) -> dict:
        """The result as a JSON-ready dict (`uvs servo --json`)."""
        return {
            "initial_error": self.initial_error,
            "final_error": self.final_error,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "reason": self.reason,
            "target": self.target,
            "cycles": self.cycles,
            "halted_cycles": dict(self.halted_cycles),
            "stalled_cycles": self.stalled_cycles,
            "held_cycles": self.held_cycles,
        }


class TargetRefused(GraphError):
    """The controller refused a target (~/set_target answered success false)."""


def halt_kind(reason: str) -> str:
    """The kind of a HALTED status's reason, without its details: "estimator timeout (no
    answer within 40 ms)" -> "estimator timeout", "joint limit: joint_2" -> "joint limit";
    a latched halt's hint is dropped ("cause cleared" when its cause has)."""
    text = reason.split(" [latched")[0]
    for mark in (" (", ":"):
        text = text.split(mark)[0]
    return text.strip() or "unspecified"


def _load_class(entry: str):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


class Operator(Node):
    """Homes the arm, resets the estimator, sets targets, and follows the controller status."""

    def __init__(self, **kwargs):
        super().__init__("uvs_operator", **kwargs)
        group = self._group = ReentrantCallbackGroup()
        self._param_clients: dict[tuple[str, str], object] = {}
        self.home = self.create_client(Trigger, "driver/home", callback_group=group)
        self.reset = self.create_client(Trigger, "jacobian_estimator/reset", callback_group=group)
        self.set_target = self.create_client(SetTarget, "controller/set_target",
                                             callback_group=group)
        self.cancel = self.create_client(Trigger, "controller/cancel", callback_group=group)
        # Where the sim camera draws the target marker (target_source marker); a command,
        # like its subscription, so a point sent once arrives.
        self.target_point = self.create_publisher(PointStamped, "target_point", COMMAND_QOS)
        self._lock = threading.Lock()
        self._statuses: list[ServoStatus] = []
        self.create_subscription(ServoStatus, "controller/status", self._on_status, RECORD_QOS,
                                 callback_group=group)

    def _on_status(self, msg: ServoStatus) -> None:
        with self._lock:
            self._statuses.append(msg)

    def take_statuses(self) -> list[ServoStatus]:
        with self._lock:
            statuses, self._statuses = self._statuses, []
        return statuses

    def call(self, client, request, timeout: float = 5.0):
        if not client.wait_for_service(timeout_sec=timeout):
            raise GraphError(f"service {client.srv_name} not available within {timeout:.0f} s")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise GraphError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
        return future.result()

    # -- parameters, as `ros2 param` reads and sets them ---------------------------------
    def _parameter_client(self, kind, node: str):
        key = (kind.__name__, node)
        if key not in self._param_clients:
            suffix = "get_parameters" if kind is GetParameters else "set_parameters"
            self._param_clients[key] = self.create_client(kind, f"{node}/{suffix}",
                                                          callback_group=self._group)
        return self._param_clients[key]

    def get_parameters(self, node: str, names: list[str], timeout: float = 5.0) -> dict:
        """Values of `names` of `node` (relative name, e.g. "controller"); GraphError when
        the node does not answer or lacks one of them."""
        response = self.call(self._parameter_client(GetParameters, node),
                             GetParameters.Request(names=list(names)), timeout)
        values = [parameter_value_to_python(v) for v in response.values]
        missing = [n for n, v in zip(names, values) if v is None]
        if len(values) != len(names) or missing:
            raise GraphError(f"/{node} has no parameter {', '.join(missing or names)}")
        return dict(zip(names, values))

    def set_parameter(self, node: str, name: str, value, timeout: float = 5.0) -> None:
        """Set one parameter of `node`; GraphError with the node's reason when refused."""
        request = SetParameters.Request(parameters=[Parameter(name, value=value)
                                                    .to_parameter_msg()])
        result = self.call(self._parameter_client(SetParameters, node), request,
                           timeout).results[0]
        if not result.successful:
            raise GraphError(f"/{node} refused {name} = {value!r}: {result.reason}")

    # -- servoing ------------------------------------------------------------------------
    def wait_for_graph(self, timeout: float) -> None:
        """Wait until the graph's services are discovered and the controller publishes;
        GraphError naming what is missing after `timeout` s."""
        clients = (self.home, self.reset, self.set_target, self.cancel)
        deadline = time.monotonic() + timeout
        seen = False
        while time.monotonic() < deadline:
            seen = seen or bool(self.take_statuses())
            if seen and all(c.service_is_ready() for c in clients):
                return
            time.sleep(0.05)
        missing = [c.srv_name for c in clients if not c.service_is_ready()]
        if not seen:
            missing.append("controller/status")
        raise GraphError(f"no servo graph within {timeout:g} s: {', '.join(missing)} "
                         "not found (start one with `ros2 launch uvs_bringup "
                         "servo.launch.py`, or check ROS_DOMAIN_ID)")

    def wait_controller_sees(self, x: np.ndarray, tolerance: float, timeout: float) -> None:
        """Wait until the controller's status reports x (within `tolerance`, task units):
        it has taken in the homed arm."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for status in self.take_statuses():
                if len(status.position) == len(x) and np.allclose(status.position, x,
                                                                  atol=tolerance):
                    return
            time.sleep(0.01)
        raise GraphError(f"the controller did not see the homed arm within {timeout:.0f} s")

    def servo_to(self, target, timeout: float, home_x: np.ndarray | None = None,
                 home_tolerance: float = 1e-3, progress=None,
                 halt_grace: float = 1.0, stall_grace: float = 0.0) -> TargetResult:
        """Home (when `home_x`, the task's x at home, is given: wait until the controller
        reports it), reset the estimator, servo to `target` (m,); wait for an outcome at
        most `timeout` s.

        Converged ends the target at once; halted only when it lasts `halt_grace` s (a
        late estimator answer halts one cycle, then servoing resumes); stalled when it
        lasts `stall_grace` s (0: at once; the controller goes on commanding while it
        reports STALLED, and the error may fall again; inf: never). The controller keeps
        the arm safe either way; this is reporting. TargetRefused when the controller
        refuses the target.
        """
        if home_x is not None:
            response = self.call(self.home, Trigger.Request())
            if not response.success:
                raise GraphError(f"driver/home failed: {response.message}")
            self.wait_controller_sees(np.asarray(home_x, float), home_tolerance, timeout=5.0)
        self.call(self.reset, Trigger.Request())
        self.take_statuses()
        response = self.call(self.set_target,
                             SetTarget.Request(target=[float(v) for v in target]))
        if not response.success:
            raise TargetRefused(f"set_target rejected: {response.message}")
        target_arr = np.asarray(target, dtype=float)

        def ours(status) -> bool:
            # Statuses published before set_target still describe the previous target.
            return len(status.target) == len(target_arr) and np.allclose(status.target,
                                                                          target_arr)

        return self.follow(target, ours, timeout, progress, halt_grace, stall_grace)

    def follow(self, target, ours, timeout: float, progress=None, halt_grace: float = 1.0,
               stall_grace: float = 0.0) -> TargetResult:
        """Collect the statuses `ours` accepts until an outcome (see servo_to) or `timeout`
        s, then cancel the target. target: what TargetResult reports as the target."""
        start = time.monotonic()
        times, errors = [], []
        first = last = None
        outcome, reason, steps, held, stalled = "timeout", "", 0, 0, 0
        halted: dict[str, int] = {}
        halted_since = stalled_since = None
        while outcome == "timeout" and time.monotonic() - start < timeout:
            time.sleep(0.01)
            for status in self.take_statuses():
                if not ours(status):
                    continue
                now = time.monotonic() - start
                first = status if first is None else first
                last = status
                times.append(now)
                errors.append(float(status.error_norm))
                steps = int(status.step)
                held += status.estimator.endswith("(held)")
                if progress is not None:
                    progress(now, status)
                if status.state == ServoStatus.HALTED:
                    kind = halt_kind(status.reason)
                    halted[kind] = halted.get(kind, 0) + 1
                    halted_since = now if halted_since is None else halted_since
                    reason = status.reason
                    if now - halted_since >= halt_grace:
                        outcome = "halted"
                        break
                else:
                    halted_since = None
                if status.state == ServoStatus.STALLED:
                    stalled += 1
                    stalled_since = now if stalled_since is None else stalled_since
                    reason = status.reason
                    if now - stalled_since >= stall_grace:
                        outcome = "stalled"
                        break
                else:
                    stalled_since = None
                if status.state == ServoStatus.CONVERGED:
                    outcome, reason = "converged", ""
                    break
        self.call(self.cancel, Trigger.Request())
        if first is None:
            raise GraphError("no controller status for this target: is the controller running?")
        return TargetResult(
            target=[float(v) for v in target], initial_error=errors[0], final_error=errors[-1],
            steps=steps, seconds=time.monotonic() - start, outcome=outcome,
            reason=reason if outcome != "converged" else "", times=times, errors=errors,
            initial_position=list(first.position), final_position=list(last.position),
            cycles=len(errors), halted_cycles=halted, stalled_cycles=stalled,
            held_cycles=held,
        )


class ServoGraph:
    """Bring the servo graph up in this process; use as a context manager."""

    def __init__(self, options: GraphOptions, config: Path | None = None,
                 record: Path | None = None, extra_parameters: dict | None = None,
                 domain_id: int | None = None, count_topics: bool = False):
        self.options = options
        self.config = Path(config) if config else installed_dir("config")
        self.specs: list[NodeSpec] = servo_graph(options)
        # The robot model the nodes load: the options', else the parameter files'.
        self.robot = options.robot or config_robot(self.config)
        self.record_path = Path(record) if record else None
        self.extra_parameters = extra_parameters or {}
        self.domain_id = domain_id
        self.context: Context | None = None
        self.nodes: dict[str, Node] = {}
        self.operator: Operator | None = None
        self.recorder = None
        self.counter = None
        self.count_topics = count_topics
        # After stop(): messages per topic written to the bag, and seen by the counter.
        self.recorded_counts: dict[str, int] = {}
        self.counted: dict[str, int] = {}
        self._spinners: dict[str, _Spinner] = {}

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> ServoGraph:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Bring the nodes up; GraphError with the reason when the config folder lacks a
        node's file or a node refuses its parameters or model (nothing is left running)."""
        self._check_config()
        self.context = Context()
        init_kwargs = {"context": self.context}
        if self.domain_id is not None:
            init_kwargs["domain_id"] = self.domain_id
        rclpy.init(**init_kwargs)
        try:
            if self.record_path is not None:
                self._start_recorder()
            for spec in self.specs:
                cls = _load_class(spec.entry)
                args = spec.ros_args(self.config)
                for key, value in self.extra_parameters.get(spec.name, {}).items():
                    args += ["-p", f"{key}:={value}"]
                try:
                    self.nodes[spec.name] = cls(context=self.context, cli_args=args)
                except (ValueError, RuntimeError, ParameterException) as exc:
                    # What each node's main() reports as FATAL: bad parameters (values,
                    # types, unparsable files), an estimator without its model.
                    raise GraphError(f"{spec.name}: {exc}") from None
            self.operator = Operator(context=self.context)
            groups = {name: [node] for name, node in self.nodes.items()}
            groups["uvs_operator"] = [self.operator]
            monitors = [n for n in (self.recorder, self.counter) if n is not None]
            if monitors:
                groups["uvs_recorder"] = monitors
            for name, nodes in groups.items():
                self._spinners[name] = _Spinner(self.context, nodes, name)
        except BaseException:
            self.stop()
            raise

    def _check_config(self) -> None:
        import yaml

        if not self.config.is_dir():
            raise GraphError(f"config folder {self.config} does not exist")
        for spec in self.specs:
            path = self.config / spec.params_file
            try:
                params = yaml.safe_load(path.read_text())
            except OSError:
                raise GraphError(f"config folder {self.config} lacks {spec.params_file} "
                                 f"(node {spec.name})") from None
            except yaml.YAMLError as exc:
                raise GraphError(f"{path} is not valid YAML: {exc}".splitlines()[0]) from None
            if not isinstance(params, dict) or "ros__parameters" not in (
                    params.get(spec.name) or {}):
                raise GraphError(f"{path} has no '{spec.name}: ros__parameters:' section")

    def _start_recorder(self) -> None:

        types = _topic_types(self.options)
        self.recorder = BagRecorder(self.record_path, types, context=self.context)
        if self.count_topics:
            self.counter = TopicCounter(types, context=self.context)

    def stop(self) -> None:
        """Cancel; stop the graph's executors (no callback runs any more), let each node
        have its last word as its process would (the driver's zero command); let the
        recorder drain and close it; then destroy everything."""
        if self.operator is not None and self.context is not None and self.context.ok():
            try:
                self.operator.call(self.operator.cancel, Trigger.Request(), timeout=1.0)
            except GraphError:
                pass
        monitors = self._spinners.pop("uvs_recorder", None)
        for spinner in self._spinners.values():
            spinner.stop()
        self._spinners.clear()
        if self.context is not None and self.context.ok():
            for node in self.nodes.values():
                hook = getattr(node, "on_shutdown", None)
                if hook is not None:
                    hook()
        if self.recorder is not None:
            wait_quiet(self.recorder, seconds=0.3)
        for node in list(self.nodes.values()) + ([self.operator] if self.operator else []):
            node.destroy_node()
        if self.recorder is not None:
            self.recorder.close()
            self.recorded_counts = dict(self.recorder.counts)
            if self.counter is not None:
                self.counted = dict(self.counter.counts)
        if monitors is not None:
            monitors.stop()
        for node in (self.recorder, self.counter):
            if node is not None:
                node.destroy_node()
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
        self.nodes.clear()
        self.operator = None
        self.recorder = None
        self.counter = None

    # -- operations ----------------------------------------------------------------------
    def servo_to(self, target, timeout: float, home: bool = True, progress=None,
                 halt_grace: float = 1.0) -> TargetResult:
        """Home (optionally), reset the estimator, servo to `target`; wait for an outcome
        (Operator.servo_to)."""
        tolerance = 2.0 if self.options.task == "visual_servo" else 1e-4
        return self.operator.servo_to(target, timeout, home_x=self._home_x() if home else None,
                                      home_tolerance=tolerance, progress=progress,
                                      halt_grace=halt_grace)

    def servo_to_marker(self, point, timeout: float, home: bool = True, progress=None,
                        halt_grace: float = 1.0, pixel_tolerance: float = 3.0) -> TargetResult:
        """Servo to the target marker moved to ``point`` ((3,) m, base frame), as the
        paper's visual servoing did: the sim camera draws it, the target tracker reads its
        pixel, the controller takes that as x* (graph with target_source "marker").

        The marker is hidden while the arm homes (the controller halts: target lost), then
        shown at ``point``; statuses count once their target is within ``pixel_tolerance``
        px of the point's projection. TargetResult.target is that projection (u, v) px.
        """
        if self.options.target_source != "marker":
            raise GraphError("servo_to_marker needs a graph with target_source 'marker'")
        op = self.operator
        expected = self._task().camera.project(np.asarray(point, dtype=float))
        if home:
            self._show_target(None)
            # Home only once the controller holds the arm: homing while it still servos
            # to the old marker would move the arm off the home pose at once.
            self._wait_status(lambda s: s.state == ServoStatus.IDLE or (
                s.state == ServoStatus.HALTED and s.reason.startswith("target lost")),
                timeout=5.0, what="the controller to stop on the hidden target marker")
            response = op.call(op.home, Trigger.Request())
            if not response.success:
                raise GraphError(f"driver/home failed: {response.message}")
            op.wait_controller_sees(self._home_x(), tolerance=2.0, timeout=5.0)
        op.call(op.reset, Trigger.Request())
        op.take_statuses()
        self._show_target(point)

        def ours(status) -> bool:
            return (len(status.target) == 2
                    and np.linalg.norm(np.asarray(status.target) - expected) <= pixel_tolerance)

        return op.follow(expected, ours, timeout, progress, halt_grace)

    def _show_target(self, point) -> None:
        """Move the sim camera's target marker to ``point`` (3,) m, base frame; None hides
        it (a NaN point)."""
        msg = PointStamped()
        msg.header.frame_id = "base_link"
        msg.header.stamp = self.operator.get_clock().now().to_msg()
        x, y, z = (math.nan,) * 3 if point is None else (float(v) for v in point)
        msg.point.x, msg.point.y, msg.point.z = x, y, z
        self.operator.target_point.publish(msg)

    def _wait_status(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        self.operator.take_statuses()
        while time.monotonic() < deadline:
            if any(predicate(s) for s in self.operator.take_statuses()):
                return
            time.sleep(0.01)
        raise GraphError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _task(self):
        """The task the controller serves (its robot model as loaded, also one read from
        robot_description)."""
        return self.nodes["controller"].task

    def _home_x(self) -> np.ndarray:
        task = self._task()
        return np.asarray(task.x(task.home_active), dtype=float)


def home_x(task_name: str, robot: str = "gen3") -> np.ndarray:
    """(m,) x of `task_name` at the task's start pose (where ~/home puts the sim arm) for
    robot model `robot` (a load_robot spec)."""
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    task = make_task(task_name, load_robot(robot))
    return np.asarray(task.x(task.home_active), dtype=float)


class AttachedGraph:
    """An operator attached to a servo graph that runs elsewhere (``ros2 launch``, a real
    arm); use as a context manager. Only topics, services and parameter services."""

    def __init__(self, wait: float = 10.0, domain_id: int | None = None):
        self.wait = wait
        self.domain_id = domain_id
        self.context: Context | None = None
        self.operator: Operator | None = None
        self._spinner: _Spinner | None = None

    def __enter__(self) -> AttachedGraph:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Attach; GraphError when no graph answers within `wait` s (nothing left running)."""
        self.context = Context()
        init_kwargs = {"context": self.context}
        if self.domain_id is not None:
            init_kwargs["domain_id"] = self.domain_id
        rclpy.init(**init_kwargs)
        try:
            self.operator = Operator(context=self.context)
            self._spinner = _Spinner(self.context, [self.operator], "uvs_operator")
            self.operator.wait_for_graph(self.wait)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Cancel any target of ours (the arm stops), stop spinning, detach."""
        if self.operator is not None and self.context is not None and self.context.ok() \
                and self.operator.cancel.service_is_ready():
            try:
                self.operator.call(self.operator.cancel, Trigger.Request(), timeout=1.0)
            except GraphError:
                pass
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        if self.operator is not None:
            self.operator.destroy_node()
            self.operator = None
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
            self.context = None


class _Spinner:
    """A SingleThreadedExecutor spinning `nodes` on a daemon thread of its own."""

    def __init__(self, context: Context, nodes: list[Node], name: str):
        self.executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name=f"uvs-{name}", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def stop(self) -> None:
        """Stop after the callback in progress; every wait bounded."""
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)


def _topic_types(options: GraphOptions) -> dict:
    return {topic: message_class(TOPIC_TYPES[topic]) for topic in recorded_topics(options)}
