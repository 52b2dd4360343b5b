"""System: the driver (sim) and the OU babbler in one process record a babbling bag.

Both nodes spin on one executor (as `uvs servo` runs a graph) and talk over real DDS
(joint_states, task_state, joint_velocity_command, driver/home); the bag is
read back with uvs_core.dataset.read_bag and checked against the task model.
"""

import time

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from uvs_core.babble import OUProcess
from uvs_core.dataset import read_bag
from uvs_driver.babbler_node import BabblerNode
from uvs_driver.driver_node import DriverNode

RATE = 50.0
HORIZON = 10
TRAJECTORIES = 3
SEED = 7


def _run(ros_context, tmp_path, task, babbler_overrides=None, deadline_s=30.0):
    output = tmp_path / "babble"
    driver = DriverNode(context=ros_context, parameter_overrides=[
        Parameter("task", value=task), Parameter("rate", value=RATE)])
    overrides = {"task": task, "rate": RATE, "horizon": HORIZON,
                 "trajectories": TRAJECTORIES, "seed": SEED, "output": str(output)}
    overrides.update(babbler_overrides or {})
    babbler = BabblerNode(context=ros_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(driver)
    executor.add_node(babbler)
    try:
        deadline = time.monotonic() + deadline_s
        while not babbler.done.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert babbler.done.is_set(), f"babbler not done after {deadline_s} s"
    finally:
        executor.shutdown()
        babbler.destroy_node()
        driver.destroy_node()
    return driver, babbler, output


@pytest.mark.parametrize("task", ["single_point", "visual_servo"])
def test_babbler_records_trajectories_from_home_through_the_driver(ros_context, tmp_path, task):
    driver, babbler, output = _run(ros_context, tmp_path, task)
    assert babbler.error is None
    assert babbler.bag_path == output.absolute()

    data = read_bag(output)
    model = driver.task
    assert data.task == task and data.robot == "gen3"
    assert data.joint_names == list(model.robot.joint_names)
    assert data.labels == list(model.labels)
    assert len(data) == TRAJECTORIES * HORIZON
    np.testing.assert_array_equal(data.traj, np.repeat(np.arange(TRAJECTORIES), HORIZON))
    assert np.all(np.diff(data.stamps) > 0)
    np.testing.assert_allclose(data.x, model.x(model.select(data.q)), rtol=0, atol=1e-9)

    # Replay the babbler's OU noise: every step of a trajectory moves the active
    # joints by dt times one of the OU velocities sent so far in it (the newest,
    # or an older one when a command reached the driver after its tick), and
    # the inactive joints not at all.
    ou = OUProcess(model.k, theta=0.15, sigma=0.2, dt=1.0 / RATE, rng=SEED)
    inactive = np.setdiff1d(np.arange(model.robot.n), model.active)
    moved = 0
    for t in range(TRAJECTORIES):
        q = data.q[data.traj == t]
        np.testing.assert_array_equal(q[0], model.home)     # each trajectory starts at home
        np.testing.assert_array_equal(q[:, inactive], np.broadcast_to(
            model.home[inactive], (HORIZON, inactive.size)))
        ou.reset()
        sent = [np.zeros(model.k)]
        for step in range(1, HORIZON):
            sent.append(ou.sample())
            delta = model.select(q[step] - q[step - 1]) * RATE
            match = [np.allclose(delta, u, rtol=0, atol=1e-9) for u in sent]
            assert any(match), f"trajectory {t} step {step}: {delta} is no OU command sent"
            moved += not match[0]
    assert moved >= TRAJECTORIES * (HORIZON - 1) // 2   # the arm did babble


def test_babbler_without_a_driver_fails_with_the_service_name(ros_context, tmp_path):
    output = tmp_path / "never"
    started = time.monotonic()   # the babbler's wait begins while it is constructed
    babbler = BabblerNode(context=ros_context, parameter_overrides=[
        Parameter("home_service", value="nobody/home"), Parameter("service_timeout", value=0.3),
        Parameter("output", value=str(output))])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(babbler)
    try:
        while not babbler.done.is_set() and time.monotonic() - started < 10.0:
            executor.spin_once(timeout_sec=0.05)
        assert babbler.done.is_set()
        assert 0.3 <= time.monotonic() - started < 5.0
        assert "/nobody/home" in babbler.error and "did not appear" in babbler.error
    finally:
        executor.shutdown()
        babbler.destroy_node()
    assert not output.exists()


def test_babbler_shut_down_early_writes_what_it_has(ros_context, tmp_path):
    output = tmp_path / "partial"
    driver = DriverNode(context=ros_context, parameter_overrides=[Parameter("rate", value=RATE)])
    babbler = BabblerNode(context=ros_context, parameter_overrides=[
        Parameter("rate", value=RATE), Parameter("horizon", value=HORIZON),
        Parameter("trajectories", value=1000), Parameter("output", value=str(output))])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(driver)
    executor.add_node(babbler)
    try:
        deadline = time.monotonic() + 20.0
        while babbler.samples < HORIZON + 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert babbler.samples >= HORIZON + 3
    finally:
        executor.shutdown()
        babbler.destroy_node()
        driver.destroy_node()
    data = read_bag(output)
    assert len(data) == babbler.samples
    assert data.traj[0] == 0 and data.traj[-1] >= 1
    assert np.all(data.traj[:HORIZON] == 0)


def test_servo_mode_bag_holds_the_servo_law_with_noise_on_five_percent(ros_context, tmp_path):
    """mode servo (the paper's real-arm data): every command in the bag is the true-Jacobian
    law toward the recorded target from the recorded (q, x), but ~5 % that carry
    N(0, 0.1) noise; each trajectory starts at home and heads for its target."""
    from uvs_core.babble import servo_law

    horizon, trajectories = 60, 8
    driver, babbler, output = _run(
        ros_context, tmp_path, "single_point",
        {"mode": "servo", "horizon": horizon, "trajectories": trajectories},
        deadline_s=60.0)
    assert babbler.error is None
    data = read_bag(output)
    model = driver.task
    assert len(data) == horizon * trajectories
    assert data.commands is not None and data.targets is not None
    sent = np.all(np.isfinite(data.commands), axis=1)
    assert sent.sum() == (horizon - 1) * trajectories       # none after a trajectory's last
    inactive = np.setdiff1d(np.arange(model.robot.n), model.active)
    assert np.all(data.commands[sent][:, inactive] == 0.0)

    residual = np.array([
        model.select(command) - servo_law(model, q, x, target)
        for q, x, target, command in zip(data.q[sent], data.x[sent], data.targets[sent],
                                         data.commands[sent])])
    noisy = np.linalg.norm(residual, axis=1) > 1e-9
    assert noisy.sum() == babbler.noisy_commands
    # 5 % of 472 commands: 23.6 expected, binomial sd 4.7
    assert 0.025 <= noisy.mean() <= 0.085, f"{noisy.sum()} of {noisy.size} commands noisy"
    assert 0.05 < residual[noisy].std() < 0.2               # N(0, 0.1) per joint
    envelope = model.robot.envelope.without_table()
    for t in range(trajectories):
        rows = data.traj == t
        np.testing.assert_array_equal(data.q[rows][0], model.home)
        target = data.targets[rows][0]
        assert envelope.target_problem(target, "m") is None
        error = np.linalg.norm(data.x[rows] - data.targets[rows], axis=1)
        assert error.min() < 0.8 * error[0]                   # it servoed toward it
