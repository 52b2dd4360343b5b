"""uvs_control.cycle.ServoCycle, the controller's per-cycle decision, in plain pytest:
no rclpy, no graph; times and the estimator's answers are the test's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from uvs_control.cycle import (
    CONVERGED,
    HALTED,
    IDLE,
    SERVOING,
    Answer,
    JointReading,
    ServoCycle,
)
from uvs_control.params import SPEC, control_config
from uvs_core.control import control_step, task_rank
from uvs_core.robot import load_robot
from uvs_core.safety import Envelope
from uvs_core.tasks import error_fn, make_task

Q = np.array([0.3, 0.6, -0.2, 1.2, 0.1, 0.8, 0.2])   # well conditioned (cond ~4)


class World:
    """A ServoCycle fed with states at q, answering with the true Jacobian."""

    def __init__(self, **values):
        self.robot = load_robot("gen3")
        self.task = make_task("single_point", self.robot)
        self.values = {**SPEC.defaults(), **values}
        assert SPEC.reason(self.values) is None
        self.logs: list[str] = []
        self.cycle = ServoCycle(self.robot, self.task, self.values, Envelope(),
                                info=self.logs.append, warning=self.logs.append)
        self.now = 100.0
        self.answer = "true"        # true | timeout | unavailable | fail
        self.asked: list[tuple[np.ndarray, np.ndarray]] = []
        self.during_ask = None      # called while the estimator "answers"

    def states(self, q=Q, names=None, valid=True):
        names = tuple(self.robot.joint_names) if names is None else names
        order = [self.robot.joint_names.index(n) for n in names]
        stamp = int(self.now * 1e9)
        self.cycle.on_joint_state(JointReading(stamp, names, np.asarray(q)[order]), self.now)
        self.cycle.on_task_state(stamp, self.task.x_from_q(q), valid, self.now)

    def ask(self, positions, x, timeout):
        self.asked.append((positions, x))
        if self.during_ask is not None:
            self.during_ask()
        if self.answer == "timeout":
            return None
        if self.answer == "unavailable":
            return "no service /estimate_jacobian"
        if self.answer == "fail":
            return Answer(estimator="tj", success=False, message="model not loaded")
        jac = self.task.jacobian_from_q(Q)
        return Answer(estimator="tj", success=True, rows=jac.shape[0], cols=jac.shape[1],
                      jacobian=jac.ravel().tolist())

    def step(self, dt: float = 0.05):
        self.now += dt
        return self.cycle.step(self.now, self.ask, lambda: self.now)


def test_the_cycle_and_the_specs_import_no_ros():
    # uvs_ros.params and robot_model too: a spec is plain Python until a node declares it.
    code = ("import sys, uvs_control.cycle, uvs_control.params, uvs_ros.params, "
            "uvs_ros.robot_model; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rcl_interfaces', 'std_msgs', 'uvs_interfaces')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_idle_without_a_target_commands_zero_in_robot_order():
    w = World()
    w.states()
    out = w.step()
    assert (out.state, out.reason, out.step) == (IDLE, "", 0)
    assert np.array_equal(out.command, np.zeros(7)) and w.asked == []


def test_servoing_commands_the_law_in_joint_states_order():
    w = World()
    names = tuple(reversed(w.robot.joint_names))
    w.states(names=names)
    x = w.task.x_from_q(Q)
    target = x + np.array([0.05, -0.03, 0.02])
    assert w.cycle.target_problem(target) is None
    w.cycle.set_target(target)
    w.states(names=names)
    out = w.step()
    jac = w.task.jacobian_from_q(Q)
    config = control_config(w.values)
    qdot, _ = control_step(jac, x, target, Q[w.task.active], config,
                           w.robot.lower[w.task.active], w.robot.upper[w.task.active],
                           velocity_limits=w.robot.velocity_limits[w.task.active],
                           rank=task_rank(w.task),
                           condition_transform=w.task.condition_transform,
                           inverse_rank=task_rank(w.task), error_fn=error_fn(w.task))
    assert (out.state, out.estimator, out.step) == (SERVOING, "tj", 1)
    expected = np.zeros(7)
    expected[w.task.active] = qdot
    np.testing.assert_allclose(out.command, expected[list(reversed(range(7)))], atol=1e-12)
    assert np.abs(out.command).max() > 0.01
    # The estimator got (q, x) of one reading, q in the message's own order.
    np.testing.assert_allclose(w.asked[0][0], Q[::-1])
    np.testing.assert_allclose(w.asked[0][1], x)


def test_on_target_is_converged_and_zero():
    w = World()
    w.states()
    w.cycle.set_target(w.task.x_from_q(Q) + 0.001)
    w.states()
    out = w.step()
    assert out.state == CONVERGED and not out.command.any()


def test_a_late_answer_is_bridged_by_the_held_jacobian_then_halts():
    w = World(jacobian_hold=0.075)
    w.cycle.set_target(w.task.x_from_q(Q) + 0.05)
    w.states()
    assert w.step().state == SERVOING
    w.answer = "timeout"
    w.states()
    out = w.step(0.05)                        # 50 ms after the last answer: held
    assert (out.state, out.estimator) == (SERVOING, "tj (held)")
    assert w.cycle.held_cycles == 1 and out.command.any()
    w.states()
    out = w.step(0.05)                        # 100 ms: too old
    assert out.state == HALTED and out.reason == "estimator timeout (no answer within 40 ms)"
    assert not out.command.any()


def test_a_fault_that_lasts_latches_until_resume():
    w = World(fault_latch_after=1.0)
    w.cycle.set_target(w.task.x_from_q(Q) + 0.05)
    w.answer = "unavailable"
    reasons = []
    for _ in range(20):                       # 1.25 s of cycles of 1/16 s (exact in binary)
        w.states()
        out = w.step(0.0625)
        reasons.append((out.latched, out.reason))
    assert reasons[0] == (False, "estimator unavailable: no service /estimate_jacobian")
    assert reasons[-1][0] and reasons[-1][1].endswith("[latched: set a target or call ~/resume]")
    first_latched = next(i for i, (latched, _) in enumerate(reasons) if latched)
    assert first_latched == 16                # 1 s after the first fault
    w.answer = "true"
    w.states()
    out = w.step()                            # the cause cleared: still latched
    assert out.latched and out.reason.startswith("cause cleared (estimator unavailable")
    assert w.cycle.resume().startswith("estimator unavailable")
    w.states()
    out = w.step()
    assert (out.state, out.latched) == (SERVOING, False)


def test_stale_or_lost_states_halt_without_asking():
    w = World()
    w.cycle.set_target(w.task.x_from_q(Q) + 0.05)
    w.states(valid=False)
    out = w.step()
    assert (out.state, out.reason) == (HALTED, "marker lost") and w.asked == []
    w.states()
    out = w.step(0.3)                         # state_timeout 0.25 s
    assert out.state == HALTED and out.reason.startswith("joint states stale (0.30 s old)")


def test_a_new_target_or_cancel_during_the_wait_drops_or_idles_the_cycle():
    w = World()
    x = w.task.x_from_q(Q)
    w.cycle.set_target(x + 0.05)
    w.states()
    w.during_ask = lambda: w.cycle.set_target(x - 0.05)
    assert w.step() is None and w.cycle.dropped_cycles == 1
    w.during_ask = w.cycle.cancel
    w.states()
    out = w.step()
    assert out.state == IDLE and not out.command.any()


def test_the_target_topic_can_lose_its_target():
    w = World()
    x = w.task.x_from_q(Q)
    assert w.cycle.topic_target(x, False, None, 0.0, w.now) == "target is marked invalid"
    assert w.cycle.topic_target(x + 0.05, True, None, 0.0, w.now) is None
    assert w.cycle.topic_target(x, False, None, 0.0, w.now) is None
    w.states()
    out = w.step()
    assert (out.state, out.reason) == (HALTED, "target lost (the target topic says invalid)")
    bad = w.cycle.topic_target(x + 0.05, True, np.array([1.0, np.nan, 0.0]), 0.0, w.now)
    assert bad == "velocity has 3 values or NaN/Inf; expected 3 finite ones (or none)"


@pytest.mark.parametrize("target, problem", [
    (np.zeros(2), "target has 2 values; task single_point needs 3 (x, y, z)"),
    (np.array([0.1, np.inf, 0.2]), "target has NaN or Inf"),
])
def test_target_problems(target, problem):
    assert World().cycle.target_problem(target) == problem


def test_parameter_changes_reach_the_law():
    w = World()
    w.cycle.apply({"gain": 2.5, "rate": 10.0})
    assert (w.cycle.config.gain, w.cycle.config.dt) == (2.5, 0.1)
