#!/usr/bin/env python3
# Over 600 lines: one script run by path; the probe node, the process set-ups of both backends
# and every fault scenario share the probe's timing and the report's rows.
"""Fault injection on the real driver node over DDS: how fast does a zero command reach the
arm, and does the state keep publishing? (issue #12, item 5)

The driver runs as a process of its own, as ``ros2 run`` starts it: on the sim backend
the installed ``install/uvs_driver/lib/uvs_driver/driver``; on the gen3 backend
``benchmarks/gen3_double_driver.py`` (the same ``driver_node.main`` with the Kortex double
on ``sys.path``), with the gen3 backend's supervisor process (its child), against the
double's arm served by a third process (``kortex_double/firmware_server.py``, the
double's fault injection on its stdin). A probe node in this
process commands joint velocities (a controller), records ``joint_states`` and the
driver's ``~/safety`` reports, and injects one fault after another while the arm moves.
The estimator-killed and stale-states faults (sim) run the real ``controller`` and
``jacobian_estimator`` (``tj``) processes of ``uvs_bringup.graph.servo_graph``.

For each fault: ``stop_s``, the time from the fault to a zero command reaching the arm
(sim: the first ``joint_states`` whose velocity, the command the simulation applied that
tick, is all zero and stays so; gen3: the first ``Base.Stop`` or all-zero
``SendJointSpeedsCommand`` in the double's log, or the firmware's own stop, whichever came
first; gen3 driver frozen: the time the arm's joints came to rest, the deceleration
included); ``state_hz``, the joint_states rate in the second after the bound (after
SIGCONT for the frozen driver); ``moving_at_end`` (the fault still in place, the probe
still commanding where it was; the frozen driver: before SIGCONT); and PASS when the
stop came within ``bound_s`` (2 driver ticks + ``command_timeout``, unless the row says
otherwise), the state kept publishing and the arm was left still.

This is a measurement: it exits 0 whatever the figures, 1 when something fails to run.
Run from the repository root after ``make setup`` and ``. ./activate``:
    python benchmarks/faults.py                       # every fault, both backends (~70 s)
    python benchmarks/faults.py --json --backends gen3 --faults hung_rpc,broken_socket
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# DDS discovery reaches every process on the machine: keep to localhost and a domain of
# our own, before rclpy is imported (here and in the children).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from uvs_bringup.graph import GraphOptions, servo_graph  # noqa: E402
from uvs_core.paths import installed_dir  # noqa: E402
from uvs_interfaces.msg import ServoStatus  # noqa: E402
from uvs_interfaces.srv import EstimateJacobian, SetTarget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install"
WRAPPER = Path(__file__).resolve().with_name("gen3_double_driver.py")
FIRMWARE = ROOT / "src" / "uvs_driver" / "test" / "kortex_double" / "firmware_server.py"
RATE = 20.0                  # Hz, driver ticks (config/driver.yaml)
COMMAND_TIMEOUT = 0.1        # s, the driver's watchdog (config/driver.yaml)
BOUND = 2.0 / RATE + COMMAND_TIMEOUT   # the target for every stop
CONNECTION_INACTIVITY = 2.0  # s, the gen3 session's connection_inactivity_timeout
STATE_TIMEOUT = 0.25         # s, the controller's state_timeout (config/controller.yaml)
PROBE_RATE = 20.0            # Hz, the probe commands as a 20 Hz controller does
MOTION = (0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)   # rad/s: joint 1 (continuous) turns the arm
OBSERVE = 1.0                # s observed after the bound before a row ends
FROZEN_EXTRA = 0.8           # s the driver stays frozen after the bound
START_TIMEOUT = 60.0         # s for processes to come up (the machine may be loaded)
CALL_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0          # s after SIGINT before SIGKILL
MOVING = 1e-3                # rad/s: above this a joint moves
STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                       reliability=ReliabilityPolicy.RELIABLE)
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE)
SAFETY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)

# name: (backends, what is injected)
FAULTS = {
    # In run order. The controller and estimator processes come up for the last sim
    # rows: once up, the controller owns the command topic (one source at a time).
    "controller_killed": (("sim", "gen3"), "the commanding process SIGKILLed"),
    "driver_frozen": (("sim", "gen3"), "SIGSTOP of the driver process (then SIGCONT)"),
    "nan_command": (("sim", "gen3"), "a command with NaN"),
    "wrong_length_command": (("sim", "gen3"), "a command of 6 velocities for 7 joints"),
    "over_limit_command": (("sim", "gen3"), "a command of 100 rad/s (a units bug)"),
    "second_publisher": (("sim", "gen3"), "a second node commands the same topic"),
    "envelope_breach": (("sim", "gen3"), "a command driving the tool into the table"),
    "hung_rpc": (("gen3",), "Base.SendJointSpeedsCommand never answered"),
    "arm_fault": (("gen3",), "the arm faults mid-motion"),
    "stale_joint_states": (("sim", "gen3"), "sim: the controller's joint_states cut off; "
                           "gen3: feedback datagrams lost (3 ticks)"),
    "out_of_envelope_target": (("sim",), "controller/set_target at z = -10 m"),
    "estimator_killed": (("sim",), "jacobian_estimator SIGKILLed under the real controller"),
    # Last: the driver cannot command the arm again without a restart.
    "broken_socket": (("gen3",), "the TCP connection breaks (BrokenPipeError)"),
}
QUICK = ("controller_killed", "nan_command", "broken_socket")


class BenchmarkError(RuntimeError):
    """Something needed for the measurement failed to run."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait(predicate, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


# ------------------------------------------------------------------------- processes

def publish_forever(values: list[float]) -> int:
    """A stand-in controller (``--commander``): publish ``values`` rad/s on
    joint_velocity_command at PROBE_RATE until killed."""
    rclpy.init()
    node = rclpy.create_node("faults_commander")
    publisher = node.create_publisher(Float64MultiArray, "joint_velocity_command", COMMAND_QOS)
    node.create_timer(1.0 / PROBE_RATE,
                      lambda: publisher.publish(Float64MultiArray(data=values)))
    try:
        rclpy.spin(node, executor=SingleThreadedExecutor())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


@dataclass
class Process:
    name: str
    command: list[str]
    log_path: Path
    control: bool = False        # stdin/stdout carry JSON requests (the double's firmware)
    proc: subprocess.Popen | None = None
    _next_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, env: dict) -> None:
        with open(self.log_path, "w") as log:
            pipe = subprocess.PIPE if self.control else log
            self.proc = subprocess.Popen(self.command, stdout=pipe, stderr=log, env=env,
                                         stdin=subprocess.PIPE if self.control else None,
                                         text=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def read_line(self, timeout: float, what: str) -> dict:
        """The next JSON line on the process's stdout, within ``timeout`` s."""
        answer: list = []
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            raise BenchmarkError(f"{self.name}: no {what} within {timeout:g} s\n{self.tail()}")
        return json.loads(answer[0])

    def request(self, op: str, timeout: float = 5.0, **args):
        """One request to the double's firmware (fault injection, the arm's record)."""
        with self._lock:
            self._next_id += 1
            self.proc.stdin.write(json.dumps({"id": self._next_id, "op": op, **args}) + "\n")
            self.proc.stdin.flush()
            reply = self.read_line(timeout, f"answer to {op}")
        if "error" in reply:
            raise BenchmarkError(f"{self.name}: {op}: {reply['error']}")
        return reply["result"]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        return self.proc.returncode


# ----------------------------------------------------------------------------- probe

class Probe:
    """This process's view of the graph: commands, joint_states, ~/safety, status."""

    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("faults_probe", context=self.context)
        self.intruder = rclpy.create_node("faults_intruder", context=self.context)
        self._lock = threading.Lock()
        self.states: list[tuple[float, np.ndarray, np.ndarray]] = []   # (t, q, qdot)
        self.safety: list[tuple[float, str]] = []
        self.statuses: list[tuple[float, ServoStatus]] = []
        self.relay = True      # forward joint_states to the controller's input
        self.command: list[float] | None = None
        self.intruder_command: list[float] | None = None
        node = self.node
        node.create_subscription(JointState, "joint_states", self._on_state, STATE_QOS)
        node.create_subscription(String, "driver/safety", self._on_safety, SAFETY_QOS)
        node.create_subscription(ServoStatus, "controller/status", self._on_status, STATE_QOS)
        self.publisher = node.create_publisher(Float64MultiArray, "joint_velocity_command",
                                               COMMAND_QOS)
        self.intruder_publisher = self.intruder.create_publisher(
            Float64MultiArray, "joint_velocity_command", COMMAND_QOS)
        self.relay_publisher = node.create_publisher(JointState, "faults/joint_states",
                                                     STATE_QOS)
        self.stop_client = node.create_client(Trigger, "driver/stop")
        self.clear_client = node.create_client(Trigger, "driver/clear_faults")
        self.home_client = node.create_client(Trigger, "driver/home")
        self.set_target = node.create_client(SetTarget, "controller/set_target")
        self.cancel = node.create_client(Trigger, "controller/cancel")
        self.estimator = node.create_client(EstimateJacobian, "estimate_jacobian")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self.executor.add_node(self.intruder)
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._spin, daemon=True, name="probe-spin"),
                         threading.Thread(target=self._publish, daemon=True, name="probe-cmd")]
        for thread in self._threads:
            thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _publish(self) -> None:
        period = 1.0 / PROBE_RATE
        next_t = time.monotonic()
        while not self._done.is_set():
            if self.command is not None:
                self.publisher.publish(Float64MultiArray(data=list(self.command)))
            if self.intruder_command is not None:
                self.intruder_publisher.publish(
                    Float64MultiArray(data=list(self.intruder_command)))
            next_t += period
            self._done.wait(max(0.0, next_t - time.monotonic()))

    def _on_state(self, msg: JointState) -> None:
        with self._lock:
            self.states.append((time.monotonic(), np.array(msg.position),
                                np.array(msg.velocity)))
        if self.relay:
            self.relay_publisher.publish(msg)

    def _on_safety(self, msg: String) -> None:
        with self._lock:
            self.safety.append((time.monotonic(), msg.data))

    def _on_status(self, msg: ServoStatus) -> None:
        with self._lock:
            self.statuses.append((time.monotonic(), msg))

    def states_since(self, t: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
        with self._lock:
            return [s for s in self.states if s[0] >= t]

    def last_state(self):
        with self._lock:
            return self.states[-1] if self.states else None

    def moving(self) -> bool:
        last = self.last_state()
        return last is not None and time.monotonic() - last[0] < 0.5 and bool(
            np.max(np.abs(last[2])) > MOVING)

    def call(self, client, request, timeout: float = CALL_TIMEOUT):
        if not client.wait_for_service(timeout_sec=timeout):
            raise BenchmarkError(f"service {client.srv_name} not available within {timeout:g} s")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise BenchmarkError(f"service {client.srv_name} did not answer within {timeout:g} s")
        return future.result()

    def close(self) -> None:
        self._done.set()
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.intruder.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for thread in self._threads:
            thread.join(timeout=2.0)


# --------------------------------------------------------------------------- one row

@dataclass
class Row:
    backend: str
    fault: str
    injected: str
    bound_s: float
    bound_by: str = "2 ticks + command_timeout"
    stop_s: float | None = None
    state_hz: float | None = None
    moving_at_end: bool | None = None
    passed: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        return {"backend": self.backend, "fault": self.fault, "injected": self.injected,
                "stop_s": None if self.stop_s is None else round(self.stop_s, 4),
                "bound_s": round(self.bound_s, 4), "bound_by": self.bound_by,
                "state_hz": None if self.state_hz is None else round(self.state_hz, 1),
                "state_kept_publishing": self.state_hz is not None
                and self.state_hz >= 0.5 * RATE,
                "moving_at_end": self.moving_at_end, "pass": self.passed, "note": self.note}


class Bench:
    """One backend's driver (and, for the controller faults, controller and estimator)."""

    def __init__(self, backend: str, log_dir: Path, env: dict, probe: Probe) -> None:
        self.backend = backend
        self.log_dir = log_dir
        self.env = env
        self.probe = probe
        self.config = installed_dir("config")
        specs = {s.name: s for s in servo_graph(GraphOptions(backend="sim", estimator="tj"))}
        self.specs = specs
        args = specs["driver"].ros_args(self.config)
        args += ["-p", f"backend:={backend}", "-p", f"rate:={RATE!r}",
                 "-p", f"command_timeout:={COMMAND_TIMEOUT!r}",
                 # The robot's box and table on both backends (auto: no table on the sim).
                 "-p", "envelope:=robot"]
        self.arm: Process | None = None
        if backend == "gen3":
            args += ["-p", "robot_ip:=10.0.0.7", "-p",
                     f"connection_inactivity_timeout:={int(CONNECTION_INACTIVITY * 1000)}"]
            command = [sys.executable, str(WRAPPER), *args]
            self.arm = Process("arm (Kortex double)", [sys.executable, str(FIRMWARE)],
                               log_dir / "firmware.log", control=True)
        else:
            command = [str(INSTALL / "uvs_driver" / "lib" / "uvs_driver" / "driver"), *args]
        self.driver = Process(f"driver ({backend})", command, log_dir / f"driver_{backend}.log")
        self.others: list[Process] = []
        self.safety = False
        self.first_stop_by_supervisor = False

    # -- lifecycle
    def start(self) -> None:
        env = self.env
        if self.arm is not None:
            self.arm.start(self.env)
            address = self.arm.read_line(START_TIMEOUT, "address")["address"]
            env = {**self.env, "KORTEX_DOUBLE_ADDRESS": address}
        self.driver.start(env)
        if not _wait(lambda: self.probe.last_state() is not None or not self.driver.alive(),
                     START_TIMEOUT, 0.05) or not self.driver.alive():
            raise BenchmarkError(f"{self.driver.name} not up:\n{self.driver.tail()}")
        if not _wait(lambda: self.probe.publisher.get_subscription_count() > 0, START_TIMEOUT):
            raise BenchmarkError(f"{self.driver.name} does not subscribe to commands")
        names = self.probe.node.get_service_names_and_types()
        self.safety = any(name == "/driver/resume" for name, _ in names) or bool(
            self.probe.node.get_publishers_info_by_topic("/driver/safety"))

    def stop(self) -> None:
        for process in [*self.others, self.driver]:
            process.stop()
        self.others = []
        if self.arm is not None:
            self.arm.stop()

    def check_alive(self) -> None:
        if not self.driver.alive():
            raise BenchmarkError(f"{self.driver.name} exited with {self.driver.proc.returncode}"
                                 f":\n{self.driver.tail()}")

    # -- helpers
    def start_motion(self, command=MOTION) -> None:
        self.probe.command = list(command)
        if not _wait(self.probe.moving, 10.0):
            self.check_alive()
            raise BenchmarkError(f"{self.backend}: the arm did not move on {command}")

    def settle(self) -> None:
        """No command, Stop, clear what a fault left, wait until the arm is still."""
        self.probe.command = self.probe.intruder_command = None
        self.probe.relay = True
        if self.backend == "gen3":
            self.arm.request("clear")
        self.check_alive()
        if any(p.name == "controller" and p.alive() for p in self.others):
            self.probe.call(self.probe.cancel, Trigger.Request())
        self.probe.call(self.probe.stop_client, Trigger.Request())
        if not _wait(lambda: not self.probe.moving(), 5.0, 0.02):
            raise BenchmarkError(f"{self.backend}: the arm does not come to rest")

    def first_zero_state(self, since: float) -> float | None:
        """Receipt time of the first joint_states after ``since`` from which on every
        velocity is zero (a transient zero tick, e.g. a late estimator answer, does not
        count); None when the arm still moves in the last one."""
        stopped = None
        for t, _, qdot in self.probe.states_since(since):
            if np.any(np.abs(qdot) > 0.0):
                stopped = None
            elif stopped is None:
                stopped = t
        return stopped

    def arm_stop(self, since: float) -> float | None:
        """Monotonic time a zero command reached the arm after ``since``."""
        if self.backend == "sim":
            return self.first_zero_state(since)
        times = []
        reached = self.arm.request("stop_reached", since=since)
        if reached is not None:
            times.append(reached)
        for t, what, _ in self.arm.request("events", since=since):
            if what in ("firmware_stop", "fault"):
                times.append(t)
        supervisor = [t for t, pid in self.arm.request("stops", since=since)
                      if pid != self.driver.proc.pid]
        self.first_stop_by_supervisor = bool(times and supervisor
                                             and min(supervisor) <= min(times))
        return min(times) if times else None

    def arm_moving(self) -> bool:
        if self.backend == "gen3":
            return bool(self.arm.request("moving"))
        return self.probe.moving()

    def state_hz(self, start: float, seconds: float = 1.0) -> float:
        count = sum(1 for t, _, _ in self.probe.states_since(start) if t < start + seconds)
        return count / seconds

    def observe(self, t0: float, bound: float) -> None:
        end = t0 + bound + OBSERVE
        while time.monotonic() < end:
            self.check_alive()
            time.sleep(0.02)

    def finish(self, row: Row, t0: float, check_moving: bool = True) -> Row:
        stop = self.arm_stop(t0)
        row.stop_s = None if stop is None else stop - t0
        row.state_hz = self.state_hz(t0 + row.bound_s)
        if check_moving:
            row.moving_at_end = self.arm_moving()
        row.passed = (row.stop_s is not None and row.stop_s <= row.bound_s
                      and row.state_hz >= 0.5 * RATE and not row.moving_at_end)
        return row

    # -- faults
    def run(self, fault: str) -> Row:
        row = Row(self.backend, fault, FAULTS[fault][1], BOUND)
        needs_safety = fault in ("second_publisher", "out_of_envelope_target", "envelope_breach")
        if needs_safety and not self.safety:
            row.note = "not run: the driver has no safety envelope (~/safety) yet"
            return row
        start = time.monotonic()
        self.first_stop_by_supervisor = False
        try:
            row = getattr(self, f"_{fault}")(row)
        finally:
            self.settle()
        if self.backend == "gen3" and fault != "driver_frozen":
            # Stops from the supervisor process in a row where the driver was not frozen
            # (its ticks late by 2 periods) would count as the driver's: say so.
            extra = [t for t, pid in self.arm.request("stops", since=start)
                     if pid != self.driver.proc.pid]
            if extra:
                row.note += (f"; {len(extra)} Stop(s) from the supervisor process"
                             + (", the first stop" if self.first_stop_by_supervisor else ""))
        return row

    def _bad_command(self, row: Row, command: list[float]) -> Row:
        self.start_motion()
        t0 = time.monotonic()
        self.probe.command = command
        self.observe(t0, row.bound_s)
        return self.finish(row, t0)

    def _nan_command(self, row: Row) -> Row:
        return self._bad_command(row, [float("nan")] + list(MOTION[1:]))

    def _wrong_length_command(self, row: Row) -> Row:
        return self._bad_command(row, list(MOTION[:-1]))

    def _over_limit_command(self, row: Row) -> Row:
        row = self._bad_command(row, [100.0] + list(MOTION[1:]))
        if not row.passed and row.moving_at_end:
            row.note = "capped to the speed limit and applied, not refused"
        return row

    def _controller_killed(self, row: Row) -> Row:
        values = ",".join(repr(v) for v in MOTION)
        commander = Process("commander", [sys.executable, str(Path(__file__).resolve()),
                                          "--commander", values],
                            self.log_dir / f"commander_{self.backend}.log")
        self.others.append(commander)
        commander.start(self.env)
        if not _wait(self.probe.moving, START_TIMEOUT, 0.02):
            raise BenchmarkError(f"the commander did not move the arm:\n{commander.tail()}")
        time.sleep(0.3)
        t0 = time.monotonic()
        commander.proc.send_signal(signal.SIGKILL)
        commander.proc.wait(timeout=STOP_TIMEOUT)
        self.observe(t0, row.bound_s)
        return self.finish(row, t0)

    def _driver_frozen(self, row: Row) -> Row:
        self.start_motion()
        if self.backend == "gen3":
            row.bound_by = "2 ticks + command_timeout, to zero joint speed at the arm"
            before = np.array(self.arm.request("positions"))
        t0 = time.monotonic()
        self.driver.proc.send_signal(signal.SIGSTOP)
        # Frozen for longer than the bound, but shorter than the firmware's connection
        # inactivity timeout: what stops the arm meanwhile is the supervisor process.
        time.sleep(row.bound_s + FROZEN_EXTRA)
        if self.backend == "gen3":
            row.moving_at_end = self.arm_moving()     # still frozen
        self.driver.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        if self.backend == "sim":
            # The simulated arm moves only in the driver's ticks: frozen with the process.
            row.stop_s = 0.0
            row.note = "sim arm integrates in driver ticks: it froze with the driver"
        else:
            after = np.array(self.arm.request("positions"))
            events = self.arm.request("events", since=t0)
            still = [t for t, what, _ in events if what == "still" and t < resumed]
            firmware = [t for t, what, _ in events if what == "firmware_stop" and t < resumed]
            supervisor = [t for t, pid in self.arm.request("stops", since=t0)
                          if pid != self.driver.proc.pid and t < resumed]
            row.stop_s = min(still) - t0 if still else None
            row.note = ("supervisor's Stop after "
                        + (f"{supervisor[0] - t0:.3f} s ({len(supervisor)} while frozen)"
                           if supervisor else "none")
                        + (f", firmware stop after {firmware[0] - t0:.3f} s" if firmware else "")
                        + f"; joint 1 moved {np.deg2rad(abs(after[0] - before[0])):.3f} rad "
                        f"in {resumed - t0:.1f} s frozen")
        self.observe(resumed, 0.0)
        row.state_hz = self.state_hz(resumed)
        row.passed = (row.stop_s is not None and row.stop_s <= row.bound_s
                      and row.state_hz >= 0.5 * RATE and not row.moving_at_end)
        return row

    def _second_publisher(self, row: Row) -> Row:
        self.start_motion()
        intruder = [-v for v in MOTION]
        t0 = time.monotonic()
        self.probe.intruder_command = intruder
        self.observe(t0, row.bound_s)
        states = self.probe.states_since(t0)
        applied = sum(1 for _, _, qdot in states if np.dot(qdot, intruder) > 0.0)
        reports = [t for t, text in self.probe.safety if t >= t0 and "second" in text]
        row.stop_s = None
        row.state_hz = self.state_hz(t0 + row.bound_s)
        row.moving_at_end = None
        row.note = (f"intruder applied in {applied}/{len(states)} ticks; owner kept control; "
                    f"reported on ~/safety after "
                    + (f"{reports[0] - t0:.3f} s" if reports else "never"))
        row.passed = applied == 0 and bool(reports) and reports[0] - t0 <= row.bound_s
        return row

    def _envelope_breach(self, row: Row) -> Row:
        # Joint 2 forward lowers the tool from the start pose toward the table plane.
        command = [0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0]
        t0 = time.monotonic()
        self.probe.command = command
        if not _wait(lambda: any("envelope" in text for t, text in self.probe.safety
                                 if t >= t0), 10.0, 0.01):
            row.note = "~/safety never reported an envelope breach"
            return self.finish(row, t0)
        t_report = next(t for t, text in self.probe.safety if t >= t0 and "envelope" in text)
        self.observe(t_report, row.bound_s)
        # The driver zeroes in the tick that publishes the report: the stop may reach the
        # arm before the report reaches the probe (counted as 0).
        row = self.finish(row, t0)
        if row.stop_s is not None:
            row.stop_s = max(0.0, row.stop_s - (t_report - t0))
            row.passed = (row.stop_s <= row.bound_s and row.state_hz >= 0.5 * RATE
                          and not row.moving_at_end)
        row.note = f"reported {t_report - t0:.2f} s after motion began; stop from the report"
        self.probe.command = None
        response = self.probe.call(self.probe.home_client, Trigger.Request())
        if not response.success:
            raise BenchmarkError(f"driver/home failed: {response.message}")
        return row

    def _hung_rpc(self, row: Row) -> Row:
        self.start_motion()
        t0 = time.monotonic()
        self.arm.request("hang", name="Base.SendJointSpeedsCommand")
        self.observe(t0, row.bound_s)
        restarts = sum(1 for _, what, v in self.arm.request("events", since=t0)
                       if what == "speeds" and np.any(v))
        row = self.finish(row, t0)
        row.note = (f"{restarts} joint-speed commands executed after the fault; commands "
                    "latched off until ~/clear_faults")
        self.arm.request("clear")
        self.probe.call(self.probe.clear_client, Trigger.Request())
        return row

    def _broken_socket(self, row: Row) -> Row:
        self.start_motion()
        t0 = time.monotonic()
        self.arm.request("break", kind="TCP")
        self.observe(t0, row.bound_s)
        row = self.finish(row, t0)
        row.note = "Stop over a new connection; the driver needs a restart to command again"
        return row

    def _arm_fault(self, row: Row) -> Row:
        self.start_motion()
        t0 = time.monotonic()
        self.arm.request("fault")
        self.observe(t0, row.bound_s)
        row = self.finish(row, t0)
        driver_stop = self.arm.request("stop_reached", since=t0)
        row.note = ("the arm brakes itself; the driver's Stop after "
                    + ("none" if driver_stop is None else f"{driver_stop - t0:.3f} s"))
        self.probe.call(self.probe.clear_client, Trigger.Request())
        return row

    def _stale_joint_states(self, row: Row) -> Row:
        if self.backend == "gen3":
            self.start_motion()
            t0 = time.monotonic()
            self.arm.request("drop", name="BaseCyclic.RefreshFeedback", count=6)
            self.observe(t0, row.bound_s)
            row = self.finish(row, t0, check_moving=False)
            row.note = ("feedback lost for 3 ticks: Stop, no state those ticks; the probe "
                        "commands on, so the arm moves again when feedback returns")
            return row
        row.bound_s = STATE_TIMEOUT + 2.0 / RATE + COMMAND_TIMEOUT
        row.bound_by = "controller state_timeout + 2 ticks + command_timeout"
        self._start_controller()
        t0 = time.monotonic()
        self.probe.relay = False
        self.observe(t0, row.bound_s)
        row = self.finish(row, t0)
        row.note = "the controller halts on stale states"
        return row

    def _estimator_killed(self, row: Row) -> Row:
        self._start_controller()
        estimator = next(p for p in self.others if p.name == "jacobian_estimator")
        t0 = time.monotonic()
        estimator.proc.send_signal(signal.SIGKILL)
        estimator.proc.wait(timeout=STOP_TIMEOUT)
        self.observe(t0, row.bound_s)
        row = self.finish(row, t0)
        reasons = sorted({s.reason.split(":")[0] for t, s in self.probe.statuses
                          if t >= t0 and s.reason})
        row.note = f"controller: {', '.join(reasons) or 'no halt reported'}"
        self._stop_controller()
        return row

    def _out_of_envelope_target(self, row: Row) -> Row:
        self._start_controller(move=False)
        self.probe.call(self.probe.cancel, Trigger.Request())
        t0 = time.monotonic()
        response = self.probe.call(self.probe.set_target, SetTarget.Request(
            target=[0.3, 0.0, -10.0]))
        self.observe(t0, row.bound_s)
        moved = any(np.any(np.abs(qdot) > MOVING) for t, _, qdot in self.probe.states_since(t0)
                    if t > t0 + 0.1)
        row.stop_s = None
        row.state_hz = self.state_hz(t0)
        row.moving_at_end = self.arm_moving()
        row.note = (("refused: " + response.message) if not response.success
                    else "accepted") + ("; the arm moved" if moved else "; the arm stayed still")
        row.passed = not response.success and not moved and row.state_hz >= 0.5 * RATE
        return row

    # -- the controller graph (sim)
    def _start_controller(self, move: bool = True) -> None:
        if not any(p.name == "controller" for p in self.others):
            for name in ("jacobian_estimator", "controller"):
                spec = self.specs[name]
                exe = INSTALL / spec.package / "lib" / spec.package / spec.executable
                args = [str(exe), *spec.ros_args(self.config)]
                if name == "controller":
                    args += ["-r", "joint_states:=faults/joint_states"]
                process = Process(name, args, self.log_dir / f"{name}.log")
                process.start(self.env)
                self.others.append(process)
            # A target set before the estimator serves would latch an "unavailable" halt.
            if not _wait(lambda: self.probe.set_target.service_is_ready()
                         and self.probe.estimator.service_is_ready(), START_TIMEOUT, 0.05):
                raise BenchmarkError("controller not up:\n" + "\n".join(
                    p.tail() for p in self.others))
        if not move:
            return
        # A target far enough that the arm is still servoing when the fault comes (the
        # controller's x is the tool position of the single_point task).
        from uvs_core.robot import load_robot
        from uvs_core.tasks import make_task

        task = make_task("single_point", load_robot("gen3"))
        q = np.asarray(task.q_fixed, dtype=float).copy()
        q[1] += 0.8
        target = [float(v) for v in np.asarray(task.x_from_q(q)).reshape(-1)]
        for _ in range(3):
            # A halt latched by the row before may latch again on a cycle that was under
            # way when the new target came (seen in the controller's log): set it again.
            response = self.probe.call(self.probe.set_target,
                                       SetTarget.Request(target=target))
            if not response.success:
                raise BenchmarkError(f"set_target refused: {response.message}")
            if _wait(self.probe.moving, 3.0, 0.02):
                break
        if not _wait(self.probe.moving, START_TIMEOUT, 0.02):
            raise BenchmarkError("the controller does not move the arm:\n" + "\n".join(
                p.tail() for p in self.others))
        time.sleep(0.3)

    def _stop_controller(self) -> None:
        for process in self.others:
            process.stop()
        self.others = []


# ---------------------------------------------------------------------------- report

def _verdict(row: dict) -> str:
    return "PASS" if row["pass"] else ("n/a" if row["note"].startswith("not run") else "FAIL")


def print_table(rows: list[dict]) -> None:
    header = (f"{'backend':7} {'fault':22} {'stop s':>7} {'bound s':>7} {'state Hz':>8} "
              f"{'moving':>6}  {'verdict':7} note")
    print(header)
    print("-" * len(header))
    for r in rows:
        stop = "-" if r["stop_s"] is None else f"{r['stop_s']:.3f}"
        hz = "-" if r["state_hz"] is None else f"{r['state_hz']:.0f}"
        moving = "-" if r["moving_at_end"] is None else ("yes" if r["moving_at_end"] else "no")
        verdict = _verdict(r)
        print(f"{r['backend']:7} {r['fault']:22} {stop:>7} {r['bound_s']:>7.3f} {hz:>8} "
              f"{moving:>6}  {verdict:7} {r['note']}")


def run(backends: list[str], faults: list[str], log_dir: Path) -> list[dict]:
    env = dict(os.environ)
    domain = random.SystemRandom().randint(200, 232)
    env["ROS_DOMAIN_ID"] = str(domain)
    rows = []
    for backend in backends:
        chosen = [f for f in faults if backend in FAULTS[f][0]]
        if not chosen:
            continue
        probe = Probe(domain)
        bench = Bench(backend, log_dir, env, probe)
        try:
            _say(f"[faults] {backend}: starting the driver")
            bench.start()
            for fault in chosen:
                _say(f"[faults] {backend}: {fault}")
                rows.append(bench.run(fault).as_dict())
                r = rows[-1]
                _say(f"[faults]   stop {r['stop_s']} s (bound {r['bound_s']} s), state "
                     f"{r['state_hz']} Hz, {_verdict(r)} {r['note']}")
        finally:
            bench.stop()
            probe.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sim,gen3", help="comma-separated: sim, gen3")
    parser.add_argument("--faults", default="", help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--logs", type=Path, help="keep the node logs here")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--commander", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.commander:
        return publish_forever([float(v) for v in args.commander.split(",")])
    backends = [b for b in args.backends.split(",") if b]
    faults = ([f for f in args.faults.split(",") if f] if args.faults
              else list(QUICK if args.quick else FAULTS))
    unknown = [f for f in faults if f not in FAULTS] + [b for b in backends
                                                        if b not in ("sim", "gen3")]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    if not (INSTALL / "uvs_driver").is_dir():
        parser.error(f"{INSTALL / 'uvs_driver'} not found: run `make setup` first")
    start = time.monotonic()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="uvs_faults_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(backends, faults, log_dir)
    except BenchmarkError as exc:
        _say(f"[faults] error: {exc}\n(node logs in {log_dir})")
        return 1
    except KeyboardInterrupt:
        return 130
    measured = [r for r in rows if not r["note"].startswith("not run")]
    report = {
        "schema": "uvs-faults/1",
        "command": "python benchmarks/faults.py " + " ".join(argv or sys.argv[1:]),
        "rate_hz": RATE, "command_timeout_s": COMMAND_TIMEOUT, "target_bound_s": BOUND,
        "rows": rows,
        "all_pass": bool(measured) and all(r["pass"] for r in measured),
        "seconds": round(time.monotonic() - start, 1),
        "load_1min": os.getloadavg()[0],
        "logs": str(log_dir),
    }
    print_table(rows)
    print(f"\nbound: 2 driver ticks + command_timeout = {BOUND:.3f} s unless the row says; "
          f"{sum(r['pass'] for r in measured)}/{len(measured)} PASS; "
          f"{report['seconds']} s, load {report['load_1min']:.1f}")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
