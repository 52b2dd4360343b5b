"""The controller's cycle logic, without rclpy: what one control cycle decides.

:class:`ServoCycle` holds the controller's state (the newest joint and task states, x*
and its velocity, the convergence bookkeeping, the latched fault, the last good
Jacobian) and turns it, once per cycle, into a :class:`CycleOutput`: the joint velocity
command, the servo state and its reason. The node (uvs_control.controller_node, whose
module docstring states the rules) converts messages into the calls below, runs
:meth:`ServoCycle.step` on its cycle thread with a function that asks the estimator
service, and publishes the output. Every method takes ``self.lock`` itself; ``step``
holds it only to read and commit state, not while the estimator answers. Times are
``time.monotonic()`` seconds unless a name says otherwise.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from uvs_control.params import control_config, tolerance
from uvs_core.control import ServoMonitor, control_step, task_rank, uncertainty_scale
from uvs_core.tasks import error_fn

__all__ = ["Answer", "CONVERGED", "CycleOutput", "HALTED", "IDLE", "JointReading",
           "SERVOING", "STALLED", "STATE_NAMES", "ServoCycle"]

# uvs_interfaces/ServoStatus's state constants
IDLE, SERVOING, CONVERGED, STALLED, HALTED = 0, 1, 2, 3, 4
STATE_NAMES = {IDLE: "idle", SERVOING: "servoing", CONVERGED: "converged",
               STALLED: "stalled", HALTED: "halted"}
_LATCH_HINT = " [latched: set a target or call ~/resume]"
# Halts that latch when they last fault_latch_after (faults of the graph). Others resume
# by themselves once they clear: no states yet at start, a lost marker, and the control
# law's own halts (singularity, joint limit, non-finite Jacobian).
_LATCHING = ("estimator unavailable", "estimator timeout", "estimator failed",
             "estimator returned", "joint states stale", "task state stale",
             "joint_states lacks", "task state has")


@dataclass(frozen=True)
class JointReading:
    """One joint state as received.

    stamp_ns: its header stamp, ns (0: none).
    names: the joint names, in the message's order (empty: robot order).
    positions: (len(names),) rad, or (n,) when unnamed.
    """

    stamp_ns: int
    names: tuple[str, ...]
    positions: np.ndarray


@dataclass(frozen=True)
class Answer:
    """The estimator's answer to one request (EstimateJacobian.Response's fields).

    jacobian: rows * cols values, row-major, task units/rad.
    uncertainty: dimensionless; NaN when the estimator reports none.
    """

    estimator: str
    success: bool
    message: str = ""
    rows: int = 0
    cols: int = 0
    jacobian: Sequence[float] = ()
    uncertainty: float = math.nan


#: ``(joint positions (JointState order), x (m,), timeout s) -> Answer``, or a str (the
#: service is unavailable: why), or None (no answer within the timeout)
Ask = Callable[[np.ndarray, np.ndarray, float], "Answer | str | None"]


@dataclass
class CycleOutput:
    """What one cycle decided, for the node to publish.

    command: joint velocities, rad/s, in /joint_states order (robot order when unnamed).
    target, x: (m,) task units, or None; q: (n,) rad robot order, or None.
    condition: the condition measure of the law's Jacobian (0: none).
    """

    state: int
    reason: str
    estimator: str
    condition: float
    target: np.ndarray | None
    x: np.ndarray | None
    q: np.ndarray | None
    command: np.ndarray
    step: int
    latched: bool
    uncertainty: float
    gain_scale: float


class ServoCycle:
    """The controller's state and its per-cycle decision (see the module docstring).

    robot, task: the uvs_core Robot and Task served.
    values: the controller's parameter values (uvs_control.params.SPEC), already valid.
    envelope: the uvs_core Envelope targets must lie in.
    info, warning: ``(text) -> None`` loggers.
    """

    def __init__(self, robot, task, values: dict, envelope,
                 info: Callable[[str], None], warning: Callable[[str], None]) -> None:
        self.robot, self.task, self.envelope = robot, task, envelope
        self._info, self._warning = info, warning
        self.values = dict(values)
        active = task.active
        self._lower = robot.lower[active]
        self._upper = robot.upper[active]
        self._velocity_limits = robot.velocity_limits[active]
        self.active_names = [robot.joint_names[i] for i in active]
        self._rank = task_rank(task)
        self._error_fn = error_fn(task)
        # Guards everything the cycle shares with subscriptions, services and parameter
        # callbacks (they run on other threads).
        self.lock = threading.Lock()
        self.config = control_config(self.values)
        self._monitor = self._new_monitor()
        self._joint_state: JointReading | None = None
        self._joint_time = -math.inf          # monotonic at receipt
        self._joint_history: deque[JointReading] = deque(maxlen=200)  # ~1 s, _positions_at
        self._task_state: tuple[int, np.ndarray, bool] | None = None  # stamp ns, x, valid
        self._task_time = -math.inf
        self._target: np.ndarray | None = None
        self._anchor: np.ndarray | None = None   # target when bookkeeping last restarted
        # Where x* came from: its receipt time when from the target topic, None when from
        # ~/set_target; and whether the topic has since said it is lost.
        self._target_time: float | None = None
        self._target_lost = False
        # The topic target's velocity ẋ* (m,) task units/s (None: none) and the stamp of
        # its message, s (header stamp, else receipt); recent (stamp, x*) for the estimate.
        self._target_velocity: np.ndarray | None = None
        self._target_stamp: float | None = None
        self._target_history: deque[tuple[float, np.ndarray]] = deque(maxlen=200)
        self._step = 0
        self._latched = ""          # the fault that latched the halt; "" when not latched
        self._unanswered_since: float | None = None  # first unanswered request
        # The last good answer of this target's run: (J (m, k), estimator, time, its u).
        self._last_jacobian: tuple[np.ndarray, str, float, float] | None = None
        self._answer_uncertainty = math.nan   # u of the last answer (the cycle's own)
        self.held_cycles = 0                 # cycles servoed on a held J (since start)
        self.dropped_cycles = 0              # cycles dropped: the target changed meanwhile
        self._fault_since: float | None = None       # start of the fault halt run
        # Counts operator targets (~/set_target, a far move, ~/cancel, ~/resume): a cycle
        # that waited for the estimator across one describes the old target and is dropped.
        self._target_gen = 0
        # Direction of the condition check (control_step's prev_condition): the condition
        # number at the last pose seen, the pose, and the reference it was compared with.
        # A cycle that sees the same pose again (no new joint state yet) repeats the last
        # comparison instead of reading "no change" as "approaching the singularity".
        self._cond_pose: np.ndarray | None = None
        self._cond_last = math.nan
        self._cond_ref = math.nan
        self._joint_order: tuple[tuple[str, ...], np.ndarray | None] = ((), None)
        self._last_logged = (IDLE, "")

    # ------------------------------------------------------------------ parameters

    @property
    def tolerance(self) -> float:
        """Convergence tolerance in task units (the parameter, or the task default)."""
        return tolerance(self.values, self.task)

    def _new_monitor(self) -> ServoMonitor:
        return ServoMonitor(self.tolerance, stall_window=self.values["stall_window"],
                            stall_fraction=self.values["stall_fraction"])

    def apply(self, changed: dict) -> None:
        """Take changed parameter values (name -> value, valid as a whole)."""
        with self.lock:
            self.values.update(changed)
            self.config = control_config(self.values)
            if set(changed) & {"convergence_tolerance", "stall_window", "stall_fraction"}:
                self._monitor = self._new_monitor()

    # ------------------------------------------------------------------ inputs

    def on_joint_state(self, reading: JointReading, now: float) -> None:
        """A joint state received at ``now``."""
        with self.lock:
            self._joint_state, self._joint_time = reading, now
            self._joint_history.append(reading)

    def on_task_state(self, stamp_ns: int, x: np.ndarray, valid: bool, now: float) -> None:
        """A task state (x task units; valid=False: the marker is lost) received at now."""
        with self.lock:
            self._task_state, self._task_time = (stamp_ns, x, valid), now

    def target_problem(self, target: np.ndarray) -> str | None:
        """Why ``target`` cannot be x* (length, finiteness, the envelope), or None."""
        if target.shape != (self.task.m,):
            return (f"target has {target.size} values; task {self.task.name} needs "
                    f"{self.task.m} ({', '.join(self.task.labels)})")
        if not np.all(np.isfinite(target)):
            return "target has NaN or Inf"
        # The pose task's x ends with a rotation vector (rad): only its position is a place.
        outside = self.envelope.target_problem(
            target[:3] if self.task.name == "pose" else target, self.task.units)
        if outside:
            return f"{outside}: outside the safety envelope"
        return None

    def set_target(self, target: np.ndarray) -> None:
        """An operator's target (~/set_target, target_pose): always restarts the
        bookkeeping and clears a latched halt. Check it with target_problem first."""
        with self.lock:
            self._set_target(target, restart=True)

    def topic_target(self, target: np.ndarray, valid: bool, velocity: np.ndarray | None,
                     header_stamp: float, now: float) -> str | None:
        """A message on the target topic received at ``now``; the reason it is ignored, or
        None. velocity: (m,) its ẋ* (None: none); header_stamp: s, 0 when unstamped."""
        if not valid:
            with self.lock:
                from_topic = self._target is not None and self._target_time is not None
                if from_topic:
                    # The topic's target is gone (its marker out of sight): stop, not
                    # servo on to where it was.
                    self._target_lost = True
            return None if from_topic else "target is marked invalid"
        problem = self.target_problem(target)
        if problem:
            return problem
        stamp = header_stamp if header_stamp > 0.0 else now
        mode = self.values["target_velocity"]
        if mode != "message":
            velocity = None
        elif velocity is not None and (velocity.shape != target.shape
                                       or not np.all(np.isfinite(velocity))):
            return (f"velocity has {velocity.size} values or NaN/Inf; expected "
                    f"{target.size} finite ones (or none)")
        with self.lock:
            if mode == "estimate":
                # Receipt times: a camera pipeline's stamp is the frame's joint state, which
                # says when the arm was seen, not when the target was (two frames may share it).
                velocity = self._estimate_velocity(now, target)
            self._set_target(target, received=now, velocity=velocity, stamp=stamp)
        return None

    def _set_target(self, target: np.ndarray, restart: bool = False,
                    received: float | None = None, velocity: np.ndarray | None = None,
                    stamp: float | None = None) -> None:
        """Take a new x* (lock held). Bookkeeping restarts, and a latched halt clears, when
        it moved beyond the tolerance or ``restart``; a small move (a moving target's next
        sample) only updates x*. ``received``: receipt time of a topic target (it can go
        stale), None for an operator's. A target that moves with a velocity is compared
        with where the previous one's velocity took it, not with the anchor."""
        self._target_time, self._target_lost = received, False
        reference = self._anchor
        moving = (self._target_velocity is not None and self._target is not None
                  and self._target_stamp is not None and stamp is not None)
        if moving:
            reference = self._target + self._target_velocity * max(
                0.0, min(stamp - self._target_stamp, self.values["target_velocity_timeout"]))
        if (restart or reference is None
                or float(self.task.distance(reference, target)) > self.tolerance):
            self._unlatch("new target")
            self._target_gen += 1
            self._fault_since = None
            self._anchor = target.copy()
            self._last_jacobian = None
            self._step = 0
            self._monitor.reset()
            # One free step for the condition check, so a servo halted near a
            # singularity can try the new direction (see control_step).
            self._cond_last = self._cond_ref = math.nan
        elif moving or velocity is not None:
            self._anchor = target.copy()       # a stream: the anchor follows it
        self._target = target.copy()
        self._target_velocity = None if velocity is None else velocity.copy()
        self._target_stamp = stamp
        if received is None:
            self._target_history.clear()

    def _estimate_velocity(self, stamp: float, target: np.ndarray) -> np.ndarray | None:
        """ẋ* from the topic targets of the last target_velocity_window s: the median, per
        coordinate, of the velocities between successive ones (a jump of the target, one
        outlier among them, is not read as motion); None with no earlier target in the
        window (lock held). stamp: s, receipt time."""
        history = self._target_history
        if history and stamp <= history[-1][0]:
            history.pop()
        history.append((stamp, target.copy()))
        window = self.values["target_velocity_window"]
        while len(history) > 1 and stamp - history[0][0] > window:
            history.popleft()
        if len(history) < 2:
            return None
        stamps = np.array([t for t, _ in history])
        points = np.stack([x for _, x in history])
        steps = np.diff(points, axis=0) / np.diff(stamps)[:, None]
        return np.median(steps, axis=0)

    def resume(self) -> str:
        """~/resume: clear a latched halt, keep the target; the fault that had latched
        ("" when none)."""
        with self.lock:
            latched = self._latched
            self._unlatch("~/resume")
            self._target_gen += 1
            self._fault_since = None
            self._monitor.reset()
            self._cond_last = self._cond_ref = math.nan
        return latched

    def cancel(self) -> int:
        """~/cancel: forget the target, idle. Returns the length of the zero command to
        send (the joint_states' joints, or the robot's)."""
        with self.lock:
            self._unlatch("~/cancel")
            self._target_gen += 1
            self._fault_since = None
            self._target = self._anchor = self._target_time = None
            self._target_velocity = self._target_stamp = None
            self._target_history.clear()
            self._target_lost = False
            self._step = 0
            self._monitor.reset()
            order = self._joint_order
            return len(order[0] if order[1] is not None else self.robot.joint_names)

    def _unlatch(self, why: str) -> None:
        """Clear a latched halt (lock held)."""
        if self._latched:
            self._info(f"latched halt ({self._latched}) cleared by {why}")
        self._latched = ""

    # ------------------------------------------------------------------ the cycle

    def _target_now(self, now: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(x* (m,), ẋ* (m,) or None) for a cycle at ``now`` (lock held): a topic target
        with a velocity, at most target_velocity_timeout old, is extrapolated to now and
        fed forward; else it is held still."""
        if self._target is None:
            return None, None
        target = self._target.copy()
        velocity = self._target_velocity
        if velocity is None or self._target_time is None or not np.any(velocity != 0.0):
            return target, None
        age = now - self._target_time
        if age > self.values["target_velocity_timeout"]:
            return target, None
        return target + velocity * max(age, 0.0), velocity.copy()

    def _joint_index(self, names: tuple[str, ...], count: int) -> np.ndarray | None:
        """(n,) index into a JointState's arrays for each robot joint, or None."""
        if self._joint_order[0] == names:
            return self._joint_order[1]
        if not names and count == self.robot.n:
            index = np.arange(self.robot.n)   # unnamed: robot order
        elif set(self.robot.joint_names) <= set(names):
            index = np.array([names.index(j) for j in self.robot.joint_names])
        else:
            index = None
        self._joint_order = (names, index)
        return index

    def _positions_at(self, stamp: int, latest: np.ndarray) -> np.ndarray:
        """Joint positions (the JointState's own order) measured with the task state of
        header stamp ``stamp`` ns: the joint state of equal stamp, else the nearest within
        1 s; ``latest`` when the stamps are zero or nothing is that close (lock held)."""
        latest_reading = self._joint_state
        if stamp == 0 or not self._joint_history:
            return latest
        best, best_gap = None, 1_000_000_000
        for reading in reversed(self._joint_history):
            gap = abs(reading.stamp_ns - stamp)
            if gap < best_gap:
                best, best_gap = reading, gap
            if gap == 0 or reading.stamp_ns < stamp - best_gap:
                break
        if best is None or best is latest_reading or best.names != latest_reading.names \
                or best.positions.size != latest.size:
            return latest
        return best.positions

    def _read_inputs(self, now: float):
        """(q (n,) robot order, x (m,), js_positions, js_names, problem) from the newest
        states (lock held); problem is a reason to halt, or None."""
        js, ts = self._joint_state, self._task_state
        timeout = self.values["state_timeout"]
        q = x = positions = None
        names: tuple[str, ...] = ()
        if js is not None:
            names, positions = js.names, js.positions
            index = self._joint_index(names, positions.size)
            if index is not None and positions.size >= len(names):
                q = positions[index]
        if ts is not None and ts[1].size == self.task.m:
            x = ts[1]
        if js is None:
            return q, x, positions, names, "no joint states"
        if now - self._joint_time > timeout:
            return q, x, positions, names, \
                f"joint states stale ({now - self._joint_time:.2f} s old)"
        if q is None:
            missing = sorted(set(self.robot.joint_names) - set(names))
            return q, x, positions, names, \
                f"joint_states lacks {', '.join(missing) or 'positions'}"
        if ts is None:
            return q, x, positions, names, "no task state"
        if now - self._task_time > timeout:
            return q, x, positions, names, \
                f"task state stale ({now - self._task_time:.2f} s old)"
        if not ts[2]:
            return q, x, positions, names, "marker lost"
        if x is None:
            return q, x, positions, names, \
                f"task state has {ts[1].size} values, expected {self.task.m}"
        if self._target_lost:
            return q, x, positions, names, "target lost (the target topic says invalid)"
        positions = self._positions_at(ts[0], positions)
        target_timeout = self.values["target_timeout"]
        if (self._target_time is not None and target_timeout > 0
                and now - self._target_time > target_timeout):
            return q, x, positions, names, \
                f"target stale ({now - self._target_time:.2f} s old)"
        return q, x, positions, names, None

    def _request_jacobian(self, ask: Ask, positions: np.ndarray, x: np.ndarray,
                          timeout: float, clock: Callable[[], float]):
        """(J (m, k), estimator name, problem): ask the estimator, wait at most timeout.
        The answer's uncertainty goes to self._answer_uncertainty (NaN without one)."""
        self._answer_uncertainty = math.nan
        answer = ask(positions, x, timeout)
        if isinstance(answer, str):
            return None, "", f"estimator unavailable: {answer}"
        if answer is None:
            now = clock()                  # after the wait
            if self._unanswered_since is None:
                self._unanswered_since = now - timeout
            silent = now - self._unanswered_since
            if silent >= self.values["fault_latch_after"]:
                return None, "", f"estimator unavailable: no answer for {silent:.1f} s"
            return None, "", f"estimator timeout (no answer within {timeout * 1e3:.0f} ms)"
        self._unanswered_since = None
        name = answer.estimator
        if not answer.success:
            return None, name, f"estimator failed: {answer.message}"
        m, k, n = self.task.m, self.task.k, self.robot.n
        rows, cols = int(answer.rows), int(answer.cols)
        if rows * cols != len(answer.jacobian) or rows != m or cols not in (k, n):
            return None, name, (f"estimator returned a {rows}x{cols} Jacobian with "
                                f"{len(answer.jacobian)} values, expected {m}x{k}")
        jac = np.asarray(answer.jacobian, dtype=float).reshape(rows, cols)
        self._answer_uncertainty = float(answer.uncertainty)
        if cols != k:                       # full-arm columns: keep the driven joints
            jac = jac[:, self.task.active]
        return jac, name, None

    def _hold_jacobian(self, jac, estimator: str, problem: str | None, now: float):
        """Remember a good answer; on a missed deadline, the last one while it is younger
        than jacobian_hold (estimator name marked "(held)"). Failures never hold."""
        if problem is None:
            self._last_jacobian = (jac, estimator, now, self._answer_uncertainty)
            return jac, estimator, problem
        last = self._last_jacobian
        if (problem.startswith("estimator timeout") and last is not None
                and now - last[2] <= self.values["jacobian_hold"]):
            self.held_cycles += 1
            self._answer_uncertainty = last[3]
            return last[0], f"{last[1]} (held)", None
        return jac, estimator, problem

    def step(self, now: float, ask: Ask, clock: Callable[[], float]) -> CycleOutput | None:
        """One cycle at ``now``: read the newest states, ask the estimator (``ask``,
        waiting at most estimator_timeout), run the control law, and do the bookkeeping.
        ``clock()``: the monotonic time now (read after a missed deadline).
        None when the cycle is dropped: a new target, ~/resume or ~/cancel came while it
        waited for the estimator, so its outcome belongs to the old one."""
        with self.lock:
            target, target_velocity = self._target_now(now)
            generation = self._target_gen
            q, x, positions, names, problem = self._read_inputs(now)
            config, timeout = self.config, self.values["estimator_timeout"]
            u_slowdown = self.values["uncertainty_slowdown"]
            u_halt = self.values["uncertainty_halt"]
            if q is not None and self._cond_pose is not None \
                    and np.array_equal(q, self._cond_pose):
                prev_condition = self._cond_ref
            else:
                prev_condition = self._cond_last
            joint_index = self._joint_order[1] if names == self._joint_order[0] else None

        state, reason, estimator, condition = IDLE, "", "", 0.0
        qdot = info = None
        uncertainty, gain_scale = math.nan, 1.0
        if target is not None:
            if problem is None:
                jac, estimator, problem = self._request_jacobian(ask, positions, x, timeout,
                                                                 clock)
                jac, estimator, problem = self._hold_jacobian(jac, estimator, problem, now)
            if problem is None:
                uncertainty = self._answer_uncertainty
                gain_scale = float(uncertainty_scale(uncertainty, u_slowdown, u_halt))
                if gain_scale <= 0.0:
                    problem = (f"uncertain (estimator uncertainty {uncertainty:.3g} >= "
                               f"uncertainty_halt {u_halt:g})")
                elif gain_scale < 1.0:
                    config = replace(config, gain=config.gain * gain_scale)
            if problem is not None:
                state, reason = HALTED, problem
            elif self._latched:
                state, reason = HALTED, ""
            else:
                qdot, info = control_step(
                    jac, x, target, q[self.task.active], config, self._lower, self._upper,
                    velocity_limits=self._velocity_limits, prev_condition=prev_condition,
                    rank=self._rank, condition_transform=self.task.condition_transform,
                    inverse_rank=self._rank, x_star_dot=target_velocity,
                    error_fn=self._error_fn)
                condition = float(info.condition)
                if info.halted:
                    state = HALTED
                    reason = info.describe(joint_names=self.active_names)

        full = np.zeros(self.robot.n)          # robot joint order
        with self.lock:
            if target is not None and self._target is None:
                # Cancelled while waiting for the estimator: idle, zero.
                target, state, reason = None, IDLE, ""
            elif target is not None and generation != self._target_gen:
                # The next cycle starts within a period; the driver holds this one's gap.
                self.dropped_cycles += 1
                return None
            fault = target is not None and state == HALTED and reason.startswith(_LATCHING)
            if not fault:
                self._fault_since = None
            elif self._fault_since is None:
                self._fault_since = now
            if (fault and not self._latched
                    and now - self._fault_since >= self.values["fault_latch_after"]):
                self._latched = reason
            latched = bool(target is not None and self._latched)
            if latched:
                state = HALTED
                reason = (reason or f"cause cleared ({self._latched})") + _LATCH_HINT
                info = None
            if target is not None:
                if info is not None and not math.isnan(condition):
                    self._cond_pose, self._cond_ref = q, prev_condition
                    self._cond_last = condition
                if state == HALTED:
                    # Halted cycles are no evidence of a stall.
                    self._monitor.reset()
                else:
                    state, reason = self._progress(info, x, target, target_velocity, qdot,
                                                   full)
                self._step += 1
            step = self._step
            self._log_transition(state, reason)
        if joint_index is None or not names:   # unnamed JointState: robot order
            command = full
        else:                                   # /joint_states order
            command = np.zeros(len(names))
            command[joint_index] = full
        return CycleOutput(state, reason, estimator, condition, target, x, q, command, step,
                           latched, uncertainty, gain_scale)

    def _progress(self, info, x, target, target_velocity, qdot, full) -> tuple[int, str]:
        """(state, reason) of a cycle that was not halted; writes qdot into ``full`` (n,)
        when it is to be commanded (lock held)."""
        converged, stalled = self._monitor.update(
            float(info.error_norm) if self.task.name != "pose"
            else float(self.task.distance(x, target)))
        if target_velocity is not None:     # moving: followed on target too, never stalled
            full[self.task.active] = qdot
            return (CONVERGED if converged[0] else SERVOING), ""
        if converged[0]:
            return CONVERGED, ""
        full[self.task.active] = qdot
        if stalled[0]:
            return STALLED, (f"error fell less than {self._monitor.stall_fraction:.0%}"
                             f" in {self._monitor.stall_window} cycles")
        return SERVOING, ""

    def _log_transition(self, state: int, reason: str) -> None:
        """Log a change of state or of the kind of reason once (lock held)."""
        kind = (state, reason.split(" (")[0])
        if kind == self._last_logged:
            return
        self._last_logged = kind
        if state == HALTED:
            self._warning(f"halted: {reason}")
        else:
            self._info(STATE_NAMES[state] + (f": {reason}" if reason else ""))
