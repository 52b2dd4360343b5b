#!/usr/bin/env python3
# Over 600 lines: one script run by path; process start-up, the operator, the rate sweep,
# the soak and the report share its measurement code (cycles, periods, CPU, RSS).
"""Speed and soak of the servo loop: the controller's rate with the estimator in the loop.

The servo graph of ``uvs_bringup.graph.servo_graph`` (driver, jacobian_estimator,
controller) is started as separate processes, one per NodeSpec, each as
``install/<pkg>/lib/<pkg>/<exe>`` with the NodeSpec's ``--ros-args`` (parameter
file, overrides, remappings), exactly as ``ros2 launch uvs_bringup
servo.launch.py`` starts them, plus the rate under test: the controller's
``rate`` and ``estimator_timeout`` (0.8 / rate, below the period as the
controller requires) and the driver's ``rate``. An operator node in this
process homes the arm (``driver/home``), then sets random reachable targets
(``Task.sample_targets``) through ``controller/set_target`` one after another,
the next one as soon as the last converged or stalled, halted for a second,
or ran out of time (``--target-timeout``), and listens to ``controller/status``.

Measured per rate (``--rates``, ``--duration`` s each, a fresh graph each):
- the control period from the status header stamps (one status per cycle,
  stamped when the cycle publishes): median, p1, p99, max, and the share of
  cycles within +-10 % of the nominal period;
- the share of servoing cycles HALTED with "estimator timeout" (the cycle
  waits at most estimator_timeout for the estimator's answer), and every
  other halt reason;
- targets: converged (reached), stalled, halted, timed out;
- CPU use of each node process, the 1-min load average and the share of time
  some task waited for a CPU (Linux PSI, /proc/pressure/cpu): the machine may be
  shared;
- as a reference, the period of a bare rclpy timer (SingleThreadedExecutor, a
  std_msgs/Header stamped each tick) in one more process at the same rate:
  what this machine and rclpy give with no work in the loop (``--no-reference``
  leaves it out).

Soak (``--soak`` s, 0 = none; the issue's figure is 600): one more run at 20 Hz
with the same continuous targets. Every ``--rss-interval`` s the resident
memory (VmRSS, /proc/<pid>/status) of each node process is sampled; reported
are start, end and max RSS, the growth from the end of a warm-up (the sample
at ``RSS_WARMUP`` s: in the first minute a node still allocates for first uses,
DDS discovery and history buffers) to the end, and the least-squares slope over
the second half of the run.

Criteria (the issue): the period p99 within 10 % of nominal at each rate
(p99 <= 1.10 / rate), with the estimator in the loop (fewer than 1 % of the
servoing cycles halted by an estimator timeout); memory flat over the soak:
for each process a slope below 0.5 MB/min over the second half and end minus
after-warm-up below 5 % (the growth from t = 0 is reported beside it).
Why 0.5 MB/min: Python's allocator takes memory from the system in 1 MiB
arenas and glibc in 128 KiB to 64 MiB chunks, so a healthy process's RSS moves
in steps of about 1 MB; one such step in a 5 minute half gives a slope of up to
~0.2-0.4 MB/min. What it catches: a leak of more than ~400 bytes per 20 Hz cycle
(0.5 MB/min), e.g. one status message kept per cycle (a ServoStatus as Python
objects is 1-2 KB: 1.2-2.4 MB/min, 5 % of a 75 MB node in 3 minutes). A
smaller leak is out of reach of a 10 minute run and needs a longer soak.

This is a measurement: it exits 0 whatever the figures, 1 when something
fails to run (a node dies, a service does not answer), 130 when interrupted.
Every process it started is stopped on the way out (SIGINT as launch does,
then SIGKILL after 10 s: rclpy nodes sometimes ignore SIGTERM).

Run from the repository root after ``make setup`` and ``. ./activate``:
    python benchmarks/servo_loop.py --rates 20,100 --duration 60
    python benchmarks/servo_loop.py --rates 20 --duration 30 --soak 600 --plot /tmp/soak.png
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# DDS discovery reaches every process on the machine: keep to localhost and a
# domain of our own, before rclpy is imported (here and in the children).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
_USER_DOMAIN = os.environ.get("ROS_DOMAIN_ID")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from uvs_bringup.graph import GraphOptions, NodeSpec, servo_graph  # noqa: E402
from uvs_bringup.runner import GraphError, Operator  # noqa: E402
from uvs_core.paths import installed_dir  # noqa: E402
from uvs_interfaces.msg import ServoStatus  # noqa: E402
from uvs_interfaces.srv import SetTarget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install"
SOAK_RATE = 20.0            # Hz, the paper's dt = 0.05 s
TIMEOUT_SHARE = 0.8         # estimator_timeout = this / rate (must be < 1 / rate)
PERIOD_TOLERANCE = 0.10     # the issue: period p99 within 10 % of nominal
ESTIMATOR_TIMEOUT_LIMIT = 0.01  # share of servoing cycles halted by an estimator timeout
RSS_SLOPE_LIMIT = 0.5       # MB/min over the soak's second half (see the module docstring)
RSS_GROWTH_LIMIT = 0.05     # (end - after warm-up) / after warm-up over the soak
RSS_WARMUP = 60.0           # s of a run before its after-warm-up RSS sample
HALT_GRACE = 1.0            # s a halt must last to end a target (one late answer does not)
START_TIMEOUT = 60.0        # s for the nodes' services and first status
CALL_TIMEOUT = 10.0         # s for any service call
STOP_TIMEOUT = 10.0         # s after SIGINT before SIGKILL
POLL = 0.02                 # s between status drains
REFERENCE_TOPIC = "servo_loop/reference"
REFERENCE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                           reliability=ReliabilityPolicy.RELIABLE)


class BenchmarkError(RuntimeError):
    """Something needed for the measurement failed to run."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


# ------------------------------------------------------------------- processes

def serve_reference(rate: float) -> int:
    """A bare rclpy timer at `rate` Hz on a SingleThreadedExecutor, publishing a Header
    stamped at each tick on REFERENCE_TOPIC: the timer jitter of this machine and rclpy
    with no work in the loop, measured beside the controller. Runs until interrupted."""
    rclpy.init()
    node = None
    try:
        node = rclpy.create_node("servo_loop_reference")
        publisher = node.create_publisher(Header, REFERENCE_TOPIC, REFERENCE_QOS)

        def tick() -> None:
            publisher.publish(Header(stamp=node.get_clock().now().to_msg()))

        node.create_timer(1.0 / rate, tick)
        rclpy.spin(node, executor=SingleThreadedExecutor())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _cpu_pressure_us() -> int | None:
    """Total µs some task waited for a CPU (Linux PSI), or None without PSI."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            some = pressure.readline().split()
    except OSError:
        return None
    return int(some[-1].split("=")[1])


def rate_overrides(name: str, rate: float) -> dict[str, float]:
    """Parameter overrides of node `name` for a loop at `rate` Hz."""
    if name == "controller":
        return {"rate": float(rate), "estimator_timeout": round(TIMEOUT_SHARE / rate, 6)}
    if name == "driver":
        return {"rate": float(rate)}
    return {}


def node_command(spec: NodeSpec, config: Path, rate: float) -> list[str]:
    """The command line launch_ros would run for `spec`, with the rate overrides."""
    exe = INSTALL / spec.package / "lib" / spec.package / spec.executable
    if not exe.is_file():
        raise BenchmarkError(f"{exe} not found: run `make setup` first")
    args = [str(exe), *spec.ros_args(config)]
    for key, value in rate_overrides(spec.name, rate).items():
        args += ["-p", f"{key}:={value!r}"]
    return args


def _read_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _read_cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])    # utime + stime (fields 14, 15)


@dataclass
class NodeProcess:
    name: str
    command: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    rss: list[tuple[float, int]] = field(default_factory=list)   # (s since phase start, kB)
    cpu_ticks: list[tuple[float, int]] = field(default_factory=list)

    def start(self, env: dict) -> None:
        with open(self.log_path, "w") as log:   # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env=env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def sample(self, t: float) -> None:
        rss, ticks = _read_rss_kb(self.proc.pid), _read_cpu_ticks(self.proc.pid)
        if rss is not None:
            self.rss.append((t, rss))
        if ticks is not None:
            self.cpu_ticks.append((t, ticks))


class NodeGraph:
    """The graph's node processes for one run (and the reference timer, when asked)."""

    def __init__(self, specs: list[NodeSpec], config: Path, rate: float, log_dir: Path,
                 reference: bool):
        self.nodes = [NodeProcess(spec.name, node_command(spec, config, rate),
                                  log_dir / f"{spec.name}.log") for spec in specs]
        if reference:
            self.nodes.append(NodeProcess(
                "reference", [sys.executable, str(Path(__file__).resolve()),
                              "--serve-reference", repr(float(rate))],
                log_dir / "reference.log"))

    def start(self, env: dict) -> None:
        for node in self.nodes:
            node.start(env)

    def check_alive(self) -> None:
        for node in self.nodes:
            if not node.alive():
                code = node.proc.returncode if node.proc else None
                raise BenchmarkError(f"node {node.name} exited with {code}:\n{node.tail()}")

    def sample(self, t: float) -> None:
        for node in self.nodes:
            if node.alive():
                node.sample(t)

    def stop(self) -> dict[str, int | None]:
        """SIGINT every node (as launch does), SIGKILL what is left after STOP_TIMEOUT.
        -> exit code per node (negative: killed by that signal)."""
        running = [n.proc for n in self.nodes if n.alive()]
        for proc in running:
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        return {n.name: (n.proc.returncode if n.proc else None) for n in self.nodes}


# -------------------------------------------------------------------- one run

@dataclass
class Cycle:
    stamp_ns: int
    state: int
    reason: str
    step: int             # cycles since the target was set (gaps: statuses not received)


@dataclass
class TargetOutcome:
    outcome: str          # converged | stalled | halted | timeout | unfinished
    seconds: float
    initial_error: float
    final_error: float
    reason: str = ""


class Run:
    """One graph at one rate: bring up, servo continuous targets, measure, tear down."""

    def __init__(self, label: str, rate: float, duration: float, specs: list[NodeSpec],
                 config: Path, task, rng: np.random.Generator, domain_id: int,
                 log_dir: Path, target_timeout: float, rss_interval: float,
                 reference: bool = True):
        self.label, self.rate, self.duration = label, rate, duration
        self.task, self.rng, self.domain_id = task, rng, domain_id
        self.target_timeout, self.rss_interval = target_timeout, rss_interval
        log_dir.mkdir(parents=True, exist_ok=True)
        self.graph = NodeGraph(specs, config, rate, log_dir, reference)
        self.reference = reference
        self.reference_stamps: list[int] = []
        self._recording = False
        self.cpu_pressure: tuple[int | None, int | None] = (None, None)
        self.cycles: list[Cycle] = []
        self.targets: list[TargetOutcome] = []
        self.load: list[tuple[float, float]] = []      # (s since start, 1-min load average)
        self.exit_codes: dict[str, int | None] = {}
        self.wall = 0.0
        self._context: Context | None = None
        self._operator: Operator | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._next_sample = 0.0

    # -- lifecycle
    def execute(self) -> None:
        env = os.environ.copy()
        env["ROS_DOMAIN_ID"] = str(self.domain_id)
        try:
            self.graph.start(env)
            self._start_operator()
            self._wait_ready()
            self._servo()
        finally:
            self._teardown()

    def _start_operator(self) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=self.domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._operator = Operator(context=self._context)
        self._operator.create_subscription(Header, REFERENCE_TOPIC, self._on_reference,
                                           REFERENCE_QOS)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._operator)
        self._thread = threading.Thread(target=self._spin, name="operator", daemon=True)
        self._thread.start()

    def _on_reference(self, msg: Header) -> None:
        if self._recording:
            self.reference_stamps.append(msg.stamp.sec * 1_000_000_000 + msg.stamp.nanosec)

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def _teardown(self) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave nodes running.
        previous = {sig: signal.signal(sig, signal.SIG_IGN)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_all(self) -> None:
        op = self._operator
        controller = next((n for n in self.graph.nodes if n.name == "controller"), None)
        if op is not None and controller is not None and controller.alive():
            try:
                op.call(op.cancel, Trigger.Request(), timeout=1.0)
            except GraphError:
                pass
        self.exit_codes = self.graph.stop()
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=2.0)
        if op is not None:
            op.destroy_node()
        if self._context is not None:
            rclpy.try_shutdown(context=self._context)
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _wait_ready(self) -> None:
        op = self._operator
        clients = (op.home, op.reset, op.set_target, op.cancel)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(c.service_is_ready() for c in clients) or not op.take_statuses():
            self.graph.check_alive()
            if time.monotonic() > deadline:
                missing = [c.srv_name for c in clients if not c.service_is_ready()]
                raise BenchmarkError(
                    f"graph not up within {START_TIMEOUT:.0f} s (missing services: "
                    f"{', '.join(missing) or 'none'}; or no controller/status)\n"
                    + "\n".join(f"--- {n.name}\n{n.tail(1500)}" for n in self.graph.nodes))
            time.sleep(0.05)

    # -- operations
    def _call(self, client, request):
        try:
            response = self._operator.call(client, request, timeout=CALL_TIMEOUT)
        except GraphError as exc:
            self.graph.check_alive()
            raise BenchmarkError(str(exc)) from exc
        if response is None or not response.success:
            message = response.message if response is not None else "no response"
            raise BenchmarkError(f"{client.srv_name} failed: {message}")
        return response

    def _home(self) -> None:
        self._call(self._operator.home, Trigger.Request())

    def _tick(self) -> None:
        """Between polls: sample memory/CPU/load when due; fail fast on a dead node."""
        self.graph.check_alive()
        now = time.monotonic()
        if now >= self._next_sample:
            t = now - self._t0
            self.graph.sample(t)
            self.load.append((t, os.getloadavg()[0]))
            self._next_sample = now + self.rss_interval

    def _drain(self, end: float):
        """New statuses, recorded as cycles; those received after `end` are dropped."""
        statuses = self._operator.take_statuses()
        if time.monotonic() > end:
            return []
        for status in statuses:
            stamp = status.header.stamp
            self.cycles.append(Cycle(stamp.sec * 1_000_000_000 + stamp.nanosec,
                                     int(status.state), status.reason, int(status.step)))
        return statuses

    def _servo(self) -> None:
        op = self._operator
        self._home()
        op.take_statuses()          # start-up and homing are not part of the measurement
        self._recording = True
        self._t0 = time.monotonic()
        pressure_start = _cpu_pressure_us()
        end = self._t0 + self.duration
        self._next_sample = self._t0
        self._tick()
        while time.monotonic() < end:
            target = self.task.sample_targets(self.rng, 1)[0]
            self._call(op.reset, Trigger.Request())
            self._call(op.set_target, SetTarget.Request(target=[float(v) for v in target]))
            result = self._follow(target, end)
            self.targets.append(result)
            if result.outcome in ("halted", "timeout"):
                self._home()          # start the next target from a known pose
        self.wall = time.monotonic() - self._t0
        self.cpu_pressure = (pressure_start, _cpu_pressure_us())
        self._recording = False
        self.graph.sample(self.wall)

    def _follow(self, target: np.ndarray, end: float) -> TargetOutcome:
        start = time.monotonic()
        errors: list[float] = []
        halted_since = None
        while True:
            time.sleep(POLL)
            self._tick()
            now = time.monotonic()
            for status in self._drain(end):
                # Statuses published before set_target still describe the previous target.
                if len(status.target) != len(target) or not np.allclose(status.target, target):
                    continue
                errors.append(float(status.error_norm))
                if status.state == ServoStatus.HALTED:
                    halted_since = now if halted_since is None else halted_since
                    if now - halted_since >= HALT_GRACE:
                        return self._outcome("halted", start, errors, status.reason)
                else:
                    halted_since = None
                if status.state == ServoStatus.CONVERGED:
                    return self._outcome("converged", start, errors)
                if status.state == ServoStatus.STALLED:
                    return self._outcome("stalled", start, errors, status.reason)
            if now >= end:
                return self._outcome("unfinished", start, errors)
            if now - start >= self.target_timeout:
                return self._outcome("timeout", start, errors)

    @staticmethod
    def _outcome(outcome: str, start: float, errors: list[float], reason: str = ""):
        return TargetOutcome(outcome, time.monotonic() - start,
                             errors[0] if errors else float("nan"),
                             errors[-1] if errors else float("nan"), reason)

    # -- figures
    def report(self) -> dict:
        out = {"label": self.label, "rate_hz": self.rate, "duration_s": round(self.wall, 2),
               "domain_id": self.domain_id,
               "estimator_timeout_s": rate_overrides("controller", self.rate)[
                   "estimator_timeout"],
               "period": period_stats([c.stamp_ns for c in self.cycles], self.rate),
               "reference_period": (period_stats(self.reference_stamps, self.rate)
                                    if self.reference else None),
               "cpu_pressure_some_pct": _pressure_pct(self.cpu_pressure, self.wall),
               "lost_statuses": lost_statuses(self.cycles),
               "halts": halt_stats(self.cycles), "targets": target_stats(self.targets),
               "load_avg_1min": _load_summary(self.load),
               "exit_codes": self.exit_codes, "processes": {}}
        hz = os.sysconf("SC_CLK_TCK")
        for node in self.graph.nodes:
            proc = {"pid": node.proc.pid if node.proc else None}
            if len(node.cpu_ticks) >= 2:
                (t0, c0), (t1, c1) = node.cpu_ticks[0], node.cpu_ticks[-1]
                proc["cpu_percent"] = round(100.0 * (c1 - c0) / hz / max(t1 - t0, 1e-9), 1)
            proc["rss"] = rss_stats(node.rss)
            out["processes"][node.name] = proc
        return out

    def periods_ms(self) -> np.ndarray:
        stamps = np.sort(np.asarray([c.stamp_ns for c in self.cycles], dtype=np.int64))
        return np.diff(stamps) / 1e6


def _pressure_pct(pressure: tuple[int | None, int | None], wall: float) -> float | None:
    start, end = pressure
    if start is None or end is None or wall <= 0:
        return None
    return 100.0 * (end - start) / 1e6 / wall


def period_stats(stamps_ns: list[int], rate: float) -> dict:
    """Control period from the status stamps (ms), against the nominal 1000 / rate."""
    nominal = 1000.0 / rate
    stamps = np.sort(np.asarray(stamps_ns, dtype=np.int64))
    out = {"nominal_ms": nominal, "cycles": int(stamps.size)}
    if stamps.size < 3:
        return out
    periods = np.diff(stamps) / 1e6
    span = (stamps[-1] - stamps[0]) / 1e9
    deviation = np.abs(periods / nominal - 1.0)
    out.update(
        mean_rate_hz=(stamps.size - 1) / span,
        median_ms=float(np.median(periods)), p1_ms=float(np.percentile(periods, 1)),
        p99_ms=float(np.percentile(periods, 99)), max_ms=float(periods.max()),
        min_ms=float(periods.min()), std_ms=float(periods.std()),
        within_10pct=float(np.mean(deviation <= PERIOD_TOLERANCE)),
        p99_abs_deviation_pct=float(100.0 * np.percentile(deviation, 99)),
        # a period of 1.5 nominal or more: a cycle late by half a period, or a lost status
        long_periods=int(np.sum(periods >= 1.5 * nominal)),
    )
    return out


def lost_statuses(cycles: list[Cycle]) -> int:
    """Statuses the operator did not receive: gaps in `step`, which counts the cycles
    since the target was set (a drop here means the period figures merge two cycles)."""
    lost = 0
    for before, after in zip(cycles, cycles[1:]):
        if after.step > before.step + 1 and before.step > 0:
            lost += after.step - before.step - 1
    return lost


def halt_stats(cycles: list[Cycle]) -> dict:
    """Cycle counts by state, and halt reasons (the kind: text before " (")."""
    by_state = {name: 0 for name in ("idle", "servoing", "converged", "stalled", "halted")}
    names = {ServoStatus.IDLE: "idle", ServoStatus.SERVOING: "servoing",
             ServoStatus.CONVERGED: "converged", ServoStatus.STALLED: "stalled",
             ServoStatus.HALTED: "halted"}
    reasons: dict[str, int] = {}
    for cycle in cycles:
        by_state[names.get(cycle.state, str(cycle.state))] += 1
        if cycle.state == ServoStatus.HALTED:
            kind = cycle.reason.split(" (")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
    with_target = len(cycles) - by_state["idle"]
    timeouts = reasons.get("estimator timeout", 0)
    return {"cycles": len(cycles), "with_target": with_target, "by_state": by_state,
            "halt_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "estimator_timeout": timeouts,
            "estimator_timeout_share": timeouts / with_target if with_target else 0.0}


def target_stats(targets: list[TargetOutcome]) -> dict:
    counts = {k: 0 for k in ("converged", "stalled", "halted", "timeout", "unfinished")}
    for t in targets:
        counts[t.outcome] += 1
    reached = [t.seconds for t in targets if t.outcome == "converged"]
    halted = {}
    for t in targets:
        if t.outcome in ("halted", "stalled"):
            kind = t.reason.split(" (")[0]
            halted[kind] = halted.get(kind, 0) + 1
    return {"set": len(targets), "reached": counts["converged"], "outcomes": counts,
            "median_seconds_to_converge": float(np.median(reached)) if reached else None,
            "stall_halt_reasons": halted}


def rss_stats(samples: list[tuple[float, int]]) -> dict:
    """Start/end/max RSS (MB) and the slope (MB/min) over the second half of the samples."""
    if not samples:
        return {}
    t = np.asarray([s[0] for s in samples]) / 60.0
    mb = np.asarray([s[1] for s in samples]) / 1024.0
    # the warm-up ends at RSS_WARMUP s, or half-way through a shorter run
    warm = int(np.searchsorted(t, min(RSS_WARMUP / 60.0, t[-1] / 2.0)))
    out = {"samples": len(samples), "start_mb": float(mb[0]), "end_mb": float(mb[-1]),
           "max_mb": float(mb.max()), "growth": float(mb[-1] / mb[0] - 1.0),
           "warm_t_s": float(60.0 * t[warm]), "warm_mb": float(mb[warm]),
           "growth_after_warmup": float(mb[-1] / mb[warm] - 1.0),
           "series": [[round(60.0 * ti, 1), round(float(m), 2)] for ti, m in zip(t, mb)]}
    half = t >= t[-1] / 2.0
    if half.sum() >= 3 and np.ptp(t[half]) > 0:
        out["slope_mb_per_min_second_half"] = float(np.polyfit(t[half], mb[half], 1)[0])
    if len(samples) >= 3 and np.ptp(t) > 0:
        out["slope_mb_per_min_all"] = float(np.polyfit(t, mb, 1)[0])
    return out


def _load_summary(load: list[tuple[float, float]]) -> dict:
    values = [v for _, v in load]
    if not values:
        return {}
    return {"start": values[0], "end": values[-1], "mean": float(np.mean(values)),
            "max": float(np.max(values))}


# --------------------------------------------------------------------- report

def verdicts(runs: list[dict], soak: dict | None) -> list[dict]:
    out = []
    for run in runs + ([soak] if soak else []):
        p, rate = run["period"], run["rate_hz"]
        if "p99_ms" not in p:
            out.append({"criterion": f"{run['label']}: period p99", "pass": False,
                        "detail": f"only {p['cycles']} statuses received"})
            continue
        limit = (1.0 + PERIOD_TOLERANCE) * p["nominal_ms"]
        ref = run.get("reference_period") or {}
        context = ""
        if "p99_ms" in ref:
            context = (f"; bare rclpy timer beside it: p99 {ref['p99_ms']:.2f} ms, "
                       f"{100 * ref['within_10pct']:.1f} % within +-10 %")
        if run.get("cpu_pressure_some_pct") is not None:
            context += f"; CPU wait {run['cpu_pressure_some_pct']:.0f} % of the time"
        out.append({"criterion": f"{run['label']}: period p99 <= {limit:.2f} ms "
                                 f"(nominal {p['nominal_ms']:.1f} ms + 10 %)",
                    "pass": p["p99_ms"] <= limit,
                    "detail": f"p99 {p['p99_ms']:.2f} ms, mean rate {p['mean_rate_hz']:.2f} Hz "
                              f"of {rate:g}, {100 * p['within_10pct']:.1f} % within +-10 %"
                              + context})
        share = run["halts"]["estimator_timeout_share"]
        out.append({"criterion": f"{run['label']}: estimator in the loop (estimator-timeout "
                                 f"halts < {100 * ESTIMATOR_TIMEOUT_LIMIT:g} % of servoing "
                                 "cycles)",
                    "pass": share < ESTIMATOR_TIMEOUT_LIMIT and run["halts"]["with_target"] > 0,
                    "detail": f"{run['halts']['estimator_timeout']} of "
                              f"{run['halts']['with_target']} ({100 * share:.2f} %)"})
    if soak:
        for name, proc in soak["processes"].items():
            if name == "reference":      # not part of the graph; its RSS is shown as a control
                continue
            rss = proc["rss"]
            slope = rss.get("slope_mb_per_min_second_half")
            ok = (slope is not None and slope < RSS_SLOPE_LIMIT
                  and rss["growth_after_warmup"] < RSS_GROWTH_LIMIT)
            out.append({"criterion": f"soak {soak['duration_s'] / 60:.1f} min: {name} RSS "
                                     f"flat (slope < {RSS_SLOPE_LIMIT:g} MB/min over the "
                                     f"second half, end vs {rss['warm_t_s']:.0f} s < "
                                     f"+{100 * RSS_GROWTH_LIMIT:g} %)",
                        "pass": ok,
                        "detail": (f"slope {slope:+.3f} MB/min, " if slope is not None
                                   else "too few samples, ")
                                  + f"{rss['warm_mb']:.1f} -> {rss['end_mb']:.1f} MB "
                                    f"({100 * rss['growth_after_warmup']:+.2f} %); from t=0 "
                                    f"{rss['start_mb']:.1f} MB ({100 * rss['growth']:+.2f} %)"
                                    f", max {rss['max_mb']:.1f}"})
    return out


def _fmt(value, width: int, spec: str) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:>{width}{spec}}"


def print_report(report: dict) -> None:
    runs = report["runs"] + ([report["soak"]] if report.get("soak") else [])
    head = (f"{'run':>10s} {'Hz':>5s} {'cycles':>7s} {'mean Hz':>8s} {'median':>7s} "
            f"{'p1':>6s} {'p99':>6s} {'max':>7s} {'+-10%':>6s} {'long':>5s} | "
            f"{'est.timeout':>11s} {'halted':>7s} | {'targets':>7s} {'conv':>5s} "
            f"{'stall':>5s} {'halt':>5s} {'tmo':>4s} | {'ref p99':>7s} {'ref+-10%':>8s} | "
            f"{'load':>4s} {'cpu wait':>8s}")
    print("control period from controller/status header stamps (ms); est.timeout and "
          "halted: share of cycles with a target; ref: a bare rclpy timer process at the "
          "same rate beside the graph; load: 1-min load average (mean); cpu wait: share of "
          "time some task waited for a CPU (PSI)")
    print(head)
    print("-" * len(head))
    for run in runs:
        p, h, t = run["period"], run["halts"], run["targets"]
        if "p99_ms" not in p:
            print(f"{run['label']:>10s} {run['rate_hz']:5g} {p['cycles']:7d}  (too few)")
            continue
        wt = max(h["with_target"], 1)
        ref = run["reference_period"] or {}
        o = t["outcomes"]
        print(f"{run['label']:>10s} {run['rate_hz']:5g} {p['cycles']:7d} "
              f"{p['mean_rate_hz']:8.2f} {p['median_ms']:7.2f} {p['p1_ms']:6.2f} "
              f"{p['p99_ms']:6.2f} {p['max_ms']:7.2f} {100 * p['within_10pct']:5.1f}% "
              f"{p['long_periods']:5d} | {100 * h['estimator_timeout_share']:10.2f}% "
              f"{100 * h['by_state']['halted'] / wt:6.2f}% | {t['set']:7d} {o['converged']:5d} "
              f"{o['stalled']:5d} {o['halted']:5d} {o['timeout']:4d} | "
              f"{_fmt(ref.get('p99_ms'), 7, '.2f')} {_fmt(ref.get('within_10pct'), 7, '.1%')} | "
              f"{run['load_avg_1min'].get('mean', float('nan')):4.2f} "
              f"{_fmt(run['cpu_pressure_some_pct'], 7, '.1f')}%")
    print()
    print(f"{'run':>10s} {'process':>18s} {'cpu %':>6s} {'RSS start':>9s} {'end':>7s} "
          f"{'max':>7s} {'growth':>7s} {'warm-up':>7s} {'growth':>7s} "
          f"{'slope 2nd half':>14s}")
    for run in runs:
        for name, proc in run["processes"].items():
            rss = proc["rss"]
            slope = rss.get("slope_mb_per_min_second_half")
            slope_text = f"{slope:+.3f} MB/min" if slope is not None else "-"
            if not rss:
                continue
            print(f"{run['label']:>10s} {name:>18s} {proc.get('cpu_percent', float('nan')):6.1f} "
                  f"{rss['start_mb']:7.1f}MB {rss['end_mb']:5.1f}MB {rss['max_mb']:5.1f}MB "
                  f"{100 * rss['growth']:+6.2f}% {rss['warm_mb']:5.1f}MB "
                  f"{100 * rss['growth_after_warmup']:+6.2f}% {slope_text:>14s}")
    print()
    for run in runs:
        if run["lost_statuses"]:
            print(f"{run['label']}: {run['lost_statuses']} statuses not received (their "
                  "periods merge into longer ones)")
        reasons = run["halts"]["halt_reasons"]
        if reasons:
            print(f"{run['label']}: halted cycles by reason: "
                  + ", ".join(f"{k} {v}" for k, v in reasons.items()))
        tr = run["targets"]
        if tr["stall_halt_reasons"]:
            print(f"{run['label']}: targets stalled/halted by reason: "
                  + ", ".join(f"{k} {v}" for k, v in tr["stall_halt_reasons"].items()))
    cfg = report["config"]
    print(f"task {cfg['task']}, estimator {cfg['estimator']}, estimator_timeout = "
          f"{TIMEOUT_SHARE:g}/rate, target timeout {cfg['target_timeout']:g} s, "
          f"{cfg['cpus']} CPUs, load average at start {cfg['load_avg_start']} and end "
          f"{report['load_avg_end']}, ROS_DOMAIN_ID {cfg['domain_ids']}")
    for v in report["verdicts"]:
        print(f"verdict: {v['criterion']}: {'PASS' if v['pass'] else 'FAIL'} ({v['detail']})")


def plot(path: Path, runs: list[Run], soak: Run | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histos = runs + ([soak] if soak else [])
    fig, axes = plt.subplots(1, len(histos) + 1, figsize=(5 * (len(histos) + 1), 4))
    for ax, run in zip(axes, histos):
        periods = run.periods_ms()
        nominal = 1000.0 / run.rate
        if periods.size:
            bins = np.linspace(0.0, max(3.0 * nominal, float(np.percentile(periods, 99.9))), 120)
            ax.hist(np.clip(periods, 0, bins[-1]), bins=bins, color="tab:blue",
                    label="controller/status")
            if run.reference_stamps:
                ref = np.diff(np.sort(np.asarray(run.reference_stamps, dtype=np.int64))) / 1e6
                ax.hist(np.clip(ref, 0, bins[-1]), bins=bins, histtype="step",
                        color="tab:orange", label="bare rclpy timer")
            ax.legend(fontsize=8)
        for x, style in ((nominal, "-"), (0.9 * nominal, "--"), (1.1 * nominal, "--")):
            ax.axvline(x, color="k", linestyle=style, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("period [ms]")
        ax.set_ylabel("cycles")
        ax.set_title(f"{run.label}: {run.rate:g} Hz, {periods.size} periods")
    ax = axes[-1]
    memory = soak if soak is not None else (runs[-1] if runs else None)
    if memory is not None:
        for node in memory.graph.nodes:
            if node.rss:
                t = np.asarray([s[0] for s in node.rss]) / 60.0
                ax.plot(t, np.asarray([s[1] for s in node.rss]) / 1024.0, label=node.name)
        ax.set_title(f"resident memory, {memory.label}")
        ax.legend()
    ax.set_xlabel("time [min]")
    ax.set_ylabel("VmRSS [MB]")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------- main

def _rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"rates must be numbers: {text}") from exc
    if not rates or any(not 1.0 <= r <= 1000.0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be in [1, 1000] Hz")
    return rates


@contextmanager
def _killing(processes: list[subprocess.Popen]):
    """Kill `processes` (the --load busy loops) on the way out, whatever happens."""
    try:
        yield
    finally:
        for proc in processes:
            proc.kill()
        for proc in processes:
            proc.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Rate of the servo loop with the estimator service in the loop (period "
                    "from controller/status stamps) and a memory soak; the graph runs as "
                    "separate node processes, as ros2 launch starts it.")
    parser.add_argument("--rates", type=_rates, default=[20.0, 100.0],
                        help="comma-separated control rates, Hz (default 20,100)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of continuous targets per rate (default 60)")
    parser.add_argument("--soak", type=float, default=0.0,
                        help=f"seconds of soak at {SOAK_RATE:g} Hz after the rate runs "
                             "(default 0: none; the issue's figure is 600)")
    parser.add_argument("--rss-interval", type=float, default=5.0,
                        help="seconds between memory samples (default 5)")
    parser.add_argument("--task", default="single_point",
                        choices=("single_point", "multi_point", "visual_servo"))
    parser.add_argument("--estimator", default="tj",
                        help="estimator served (default tj: needs no model)")
    parser.add_argument("--target-timeout", type=float, default=15.0,
                        help="seconds before giving up on a target (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random targets")
    parser.add_argument("--logs", type=Path,
                        help="keep the node logs in this folder (default: a temporary one)")
    parser.add_argument("--plot", type=Path, help="PNG: period histograms and RSS over time")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not run the bare rclpy timer process beside the graph")
    parser.add_argument("--load", type=int, default=0,
                        help="busy-loop processes to run beside the graph (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--serve-reference", type=float, metavar="RATE",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_reference:
        return serve_reference(args.serve_reference)
    if args.duration <= 0 or args.soak < 0 or args.rss_interval <= 0 or args.load < 0:
        parser.error("--duration and --rss-interval must be > 0, --soak and --load >= 0")

    signal.signal(signal.SIGTERM, _on_sigterm)
    from uvs_core.robot import load_robot
    from uvs_core.tasks import make_task

    options = GraphOptions(task=args.task, estimator=args.estimator)
    specs = servo_graph(options)
    config = installed_dir("config")
    task = make_task(args.task, load_robot("gen3"))
    rng = np.random.default_rng(args.seed)
    base_domain = int(_USER_DOMAIN) if _USER_DOMAIN else random.SystemRandom().randint(100, 200)
    plan = [(f"{r:g}Hz", r, args.duration) for r in args.rates]
    if args.soak > 0:
        plan.append(("soak", SOAK_RATE, args.soak))
    report = {"config": {"task": args.task, "estimator": args.estimator, "rates": args.rates,
                         "duration_s": args.duration, "soak_s": args.soak,
                         "target_timeout": args.target_timeout, "seed": args.seed,
                         "cpus": os.cpu_count(), "nodes": [s.name for s in specs],
                         "load_processes": args.load,
                         "load_avg_start": [round(v, 2) for v in os.getloadavg()],
                         "domain_ids": []},
              "runs": [], "soak": None}
    done: list[Run] = []
    soak_run: Run | None = None
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.load)]
    with tempfile.TemporaryDirectory(prefix="uvs-servo-loop-") as tmp, _killing(hogs):
        log_root = args.logs or Path(tmp)
        try:
            for index, (label, rate, duration) in enumerate(plan):
                # A domain per run (unless one was given): no stale discovery between runs.
                domain = base_domain if _USER_DOMAIN else base_domain + index
                report["config"]["domain_ids"].append(domain)
                _say(f"{label}: {len(specs)} node processes at {rate:g} Hz for {duration:g} s "
                     f"(ROS_DOMAIN_ID {domain}, logs {log_root / label})")
                run = Run(label, rate, duration, specs, config, task, rng, domain,
                          log_root / label, args.target_timeout, args.rss_interval,
                          reference=not args.no_reference)
                run.execute()
                summary = run.report()
                if label == "soak":
                    soak_run, report["soak"] = run, summary
                else:
                    done.append(run)
                    report["runs"].append(summary)
                p = summary["period"]
                _say(f"  {p['cycles']} cycles, p99 {p.get('p99_ms', float('nan')):.2f} ms, "
                     f"{summary['targets']['reached']}/{summary['targets']['set']} targets "
                     "reached")
        except BenchmarkError as exc:
            _say(f"servo_loop: {exc}")
            return 1
        except KeyboardInterrupt:
            _say("servo_loop: interrupted; every node process was stopped")
            return 130
    report["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["verdicts"] = verdicts(report["runs"], report["soak"])
    print_report(report)
    if args.plot:
        plot(args.plot, done, soak_run)
        print(f"plot: {args.plot}")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
