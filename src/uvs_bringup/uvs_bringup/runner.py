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
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from uvs_bringup.graph import (
    TOPIC_TYPES,
    GraphOptions,
    NodeSpec,
    config_dir,
    recorded_topics,
    servo_graph,
)
from uvs_bringup.recorder import BagRecorder, TopicCounter, message_class, wait_quiet
from uvs_interfaces.msg import ServoStatus
from uvs_interfaces.srv import SetTarget

STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=ReliabilityPolicy.RELIABLE)
TERMINAL = {ServoStatus.CONVERGED: "converged", ServoStatus.STALLED: "stalled",
            ServoStatus.HALTED: "halted"}


class GraphError(RuntimeError):
    """The graph could not be brought up or did not answer in time."""


@dataclass
class TargetResult:
    target: list[float]
    initial_error: float
    final_error: float
    steps: int
    seconds: float
    outcome: str
    reason: str = ""
    times: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "initial_error": self.initial_error,
            "final_error": self.final_error,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "reason": self.reason,
            "target": self.target,
        }


def _load_class(entry: str):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


class Operator(Node):
    """Homes the arm, resets the estimator, sets targets, and follows the controller status."""

    def __init__(self, **kwargs):
        super().__init__("uvs_operator", **kwargs)
        group = ReentrantCallbackGroup()
        self.home = self.create_client(Trigger, "driver/home", callback_group=group)
        self.reset = self.create_client(Trigger, "jacobian_estimator/reset", callback_group=group)
        self.set_target = self.create_client(SetTarget, "controller/set_target",
                                             callback_group=group)
        self.cancel = self.create_client(Trigger, "controller/cancel", callback_group=group)
        # Where the sim camera draws the target marker (target_source marker); reliable
        # depth 1 like its subscription, so a point sent once arrives.
        self.target_point = self.create_publisher(
            PointStamped, "target_point",
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE))
        self._lock = threading.Lock()
        self._statuses: list[ServoStatus] = []
        self.create_subscription(ServoStatus, "controller/status", self._on_status, STATUS_QOS,
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


class ServoGraph:
    """Bring the servo graph up in this process; use as a context manager."""

    def __init__(self, options: GraphOptions, config: Path | None = None,
                 record: Path | None = None, extra_parameters: dict | None = None,
                 domain_id: int | None = None, count_topics: bool = False):
        self.options = options
        self.config = Path(config) if config else config_dir()
        self.specs: list[NodeSpec] = servo_graph(options)
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
    def set_estimator(self, name: str) -> None:
        """Swap the estimator as `ros2 param set` would; raises GraphError with the reason."""
        node = self.nodes["jacobian_estimator"]
        result = node.set_parameters([Parameter("estimator", value=name)])[0]
        if not result.successful:
            raise GraphError(f"estimator {name!r} rejected: {result.reason}")

    def servo_to(self, target, timeout: float, home: bool = True, progress=None,
                 halt_grace: float = 1.0) -> TargetResult:
        """Home (optionally), reset the estimator, servo to `target`; wait for an outcome.

        Converged and stalled end the target at once; halted only when it lasts
        `halt_grace` seconds (a late estimator answer halts one cycle, then servoing
        resumes). The controller keeps the arm safe either way; this is reporting.
        """
        op = self.operator
        if home:
            response = op.call(op.home, Trigger.Request())
            if not response.success:
                raise GraphError(f"driver/home failed: {response.message}")
            self._wait_controller_sees(self._home_x(), timeout=5.0)
        op.call(op.reset, Trigger.Request())
        op.take_statuses()
        response = op.call(op.set_target, SetTarget.Request(target=[float(v) for v in target]))
        if not response.success:
            raise GraphError(f"set_target rejected: {response.message}")
        target_arr = np.asarray(target, dtype=float)

        def ours(status) -> bool:
            # Statuses published before set_target still describe the previous target.
            return len(status.target) == len(target_arr) and np.allclose(status.target,
                                                                          target_arr)

        return self._follow(target, ours, timeout, progress, halt_grace)

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
        from uvs_core.robot import load_robot
        from uvs_core.tasks import make_task

        op = self.operator
        expected = make_task(self.options.task, load_robot("gen3")).camera.project(
            np.asarray(point, dtype=float))
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
            self._wait_controller_sees(self._home_x(), timeout=5.0)
        op.call(op.reset, Trigger.Request())
        op.take_statuses()
        self._show_target(point)

        def ours(status) -> bool:
            return (len(status.target) == 2
                    and np.linalg.norm(np.asarray(status.target) - expected) <= pixel_tolerance)

        return self._follow(expected, ours, timeout, progress, halt_grace)

    def _show_target(self, point) -> None:
        """Move the sim camera's target marker to ``point`` (3,) m, base frame; None hides
        it (a NaN point)."""
        msg = PointStamped()
        msg.header.frame_id = "base_link"
        msg.header.stamp = self.operator.get_clock().now().to_msg()
        x, y, z = (math.nan,) * 3 if point is None else (float(v) for v in point)
        msg.point.x, msg.point.y, msg.point.z = x, y, z
        self.operator.target_point.publish(msg)

    def _follow(self, target, ours, timeout: float, progress, halt_grace: float):
        """Collect the statuses ``ours`` accepts until an outcome or ``timeout`` s."""
        op = self.operator
        start = time.monotonic()
        times, errors = [], []
        outcome, reason, steps = "timeout", "", 0
        halted_since = None
        while outcome == "timeout" and time.monotonic() - start < timeout:
            time.sleep(0.01)
            for status in op.take_statuses():
                if not ours(status):
                    continue
                now = time.monotonic() - start
                times.append(now)
                errors.append(float(status.error_norm))
                steps = int(status.step)
                if progress is not None:
                    progress(now, status)
                if status.state == ServoStatus.HALTED:
                    halted_since = now if halted_since is None else halted_since
                    reason = status.reason
                    if now - halted_since >= halt_grace:
                        outcome = "halted"
                        break
                else:
                    halted_since = None
                if status.state in (ServoStatus.CONVERGED, ServoStatus.STALLED):
                    outcome, reason = TERMINAL[status.state], status.reason
                    break
        op.call(op.cancel, Trigger.Request())
        if not errors:
            raise GraphError("no controller status for this target: is the controller running?")
        return TargetResult(
            target=[float(v) for v in target], initial_error=errors[0], final_error=errors[-1],
            steps=steps, seconds=time.monotonic() - start, outcome=outcome,
            reason=reason if outcome != "converged" else "", times=times, errors=errors,
        )

    def _wait_status(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        self.operator.take_statuses()
        while time.monotonic() < deadline:
            if any(predicate(s) for s in self.operator.take_statuses()):
                return
            time.sleep(0.01)
        raise GraphError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _home_x(self) -> np.ndarray:
        from uvs_core.robot import load_robot
        from uvs_core.tasks import make_task

        task = make_task(self.options.task, load_robot("gen3"))
        return np.asarray(task.x(task.home_active), dtype=float)

    def _wait_controller_sees(self, x: np.ndarray, timeout: float) -> None:
        """Wait until the controller's status reports x: it has taken in the homed arm."""
        tolerance = 2.0 if self.options.task == "visual_servo" else 1e-4
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for status in self.operator.take_statuses():
                if len(status.position) == len(x) and np.allclose(status.position, x,
                                                                  atol=tolerance):
                    return
            time.sleep(0.01)
        raise GraphError(f"the controller did not see the homed arm within {timeout:.0f} s")


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
