"""The gen3 backend's supervisor process against the Kortex double (issue #12, item 8).

The driver runs as a process of its own (``driver_node.main`` with the double on its
``sys.path``), the double's arm is served from this test's process, and a probe node
here commands the arm over DDS. A SIGSTOP of the driver freezes its ticks, its backend
watchdog thread and its Kortex keep-alive: only the supervisor, a child process with a
Kortex session of its own, can then stop the arm before the firmware's
``connection_inactivity_timeout``.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Float64MultiArray

DOUBLE_DIR = Path(__file__).with_name("kortex_double")
RATE = 20.0
COMMAND_TIMEOUT = 0.1
# The bound for every stop: 2 driver ticks + command_timeout, here to zero joint
# speed at the arm (the deceleration included); 50 ms slack for a loaded test machine.
STOP_BOUND = 2.0 / RATE + COMMAND_TIMEOUT
SLACK = 0.05
QDOT = [0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]      # rad/s: joint 1 turns the arm
START_TIMEOUT = 60.0                            # s: a loaded machine starts rclpy slowly


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan may wait for its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _wait(predicate, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


@pytest.fixture
def driver_process(kortex, ros_context, tmp_path):
    """A gen3 driver process on the double, and a probe publishing QDOT at 20 Hz from
    this process once ``start()`` is called. Yields (process, start); stops both."""
    from uvs_ros.qos import COMMAND_QOS

    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from uvs_driver.driver_node import main; sys.exit(main(sys.argv[1:]))")
    log = open(tmp_path / "driver.log", "w")     # closed below
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(DOUBLE_DIR), "--ros-args",
         "-p", "backend:=gen3", "-p", "robot_ip:=10.0.0.7", "-p", f"rate:={RATE}",
         "-p", f"command_timeout:={COMMAND_TIMEOUT}"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    node = rclpy.create_node("supervisor_probe", context=ros_context)
    publisher = node.create_publisher(Float64MultiArray, "joint_velocity_command",
                                      COMMAND_QOS)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    done = threading.Event()

    def publish():
        while not done.wait(1.0 / RATE):
            publisher.publish(Float64MultiArray(data=QDOT))

    threads = [threading.Thread(target=executor.spin, daemon=True),
               threading.Thread(target=publish, daemon=True)]

    def start():
        for thread in threads:
            thread.start()

    try:
        yield process, start
    finally:
        done.set()
        for sig in (signal.SIGCONT, signal.SIGINT):
            if process.poll() is None:
                process.send_signal(sig)
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10.0)
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        log.close()


def _log(tmp_path) -> str:
    return (tmp_path / "driver.log").read_text()[-3000:]


def test_defect8_a_sigstopped_driver_process_is_stopped_by_its_supervisor(
        arm, driver_process, tmp_path):
    process, start = driver_process
    # The driver's two connections and its supervisor's one, from another process.
    assert _wait(lambda: len({c.pid for c in arm.connections}) == 2, START_TIMEOUT, 0.05), (
        f"driver and supervisor never both connected:\n{_log(tmp_path)}")
    (supervisor,) = {c.pid for c in arm.connections} - {process.pid}
    assert _running(supervisor)
    start()
    assert _wait(lambda: arm.moving(), START_TIMEOUT, 0.02), (
        f"the driver never moved the arm:\n{_log(tmp_path)}")
    time.sleep(0.3)

    frozen = time.monotonic()
    process.send_signal(signal.SIGSTOP)
    assert _wait(lambda: not arm.moving(), 1.0, 0.002), "the arm kept moving for 1 s"
    rest = [t for t, what, _ in arm.events if what == "still" and t >= frozen]
    stops = [e for e in arm.entries("Base.Stop", "ok") if e.t >= frozen]
    before = arm.positions()
    time.sleep(0.6)                              # still frozen: the arm stays still
    moved = np.radians(np.abs(arm.positions() - before)).max()
    still_frozen = not arm.moving()
    print(f"SIGSTOP -> supervisor's Stop after {1000 * (stops[0].t - frozen):.0f} ms, "
          f"joints at rest after {1000 * (rest[0] - frozen):.0f} ms "
          f"(bound {1000 * STOP_BOUND:.0f} ms)")
    assert stops[0].pid == supervisor
    assert rest[0] - frozen <= STOP_BOUND + SLACK
    assert still_frozen and moved < 1e-6
    assert not arm.event_times("firmware_stop")  # not the connection inactivity timeout

    # Thawed, the driver takes the probe's commands again; killed while the arm moves,
    # its supervisor sends a final Stop and exits: no orphan.
    process.send_signal(signal.SIGCONT)
    assert _wait(lambda: arm.moving(), 5.0, 0.01), "the thawed driver did not command"
    assert _wait(lambda: "the supervisor process sent Stop" in _log(tmp_path), 5.0, 0.05), (
        f"the driver did not report the supervisor's Stop:\n{_log(tmp_path)}")
    killed = time.monotonic()
    process.kill()
    process.wait(5.0)
    assert _wait(lambda: not _running(supervisor), 5.0, 0.01), (
        f"the supervisor {supervisor} outlived its driver")
    exited = time.monotonic() - killed
    final = [e for e in arm.entries("Base.Stop", "ok") if e.t >= killed]
    print(f"driver SIGKILLed -> supervisor's final Stop after "
          f"{1000 * (final[0].t - killed):.0f} ms, exited after {1000 * exited:.0f} ms")
    assert final and final[0].pid == supervisor and final[0].t - killed < STOP_BOUND + SLACK
    assert not arm.moving()


def test_the_supervisor_has_a_session_of_its_own_and_ends_with_the_backend(arm, gen3):
    backend = gen3(supervisor=True)
    pid = backend.supervisor_pid
    assert pid is not None and pid != os.getpid() and _running(pid)
    (connection,) = [c for c in arm.connections if c.pid == pid]
    assert connection.kind == "TCP" and connection.session is not None
    assert connection.session["connection_inactivity_timeout"] == 1500
    assert backend.supervisor_timeout == pytest.approx(2 * 0.05)

    backend.set_tick_period(0.025)               # the driver's rate changed: 2 new ticks
    assert backend.supervisor_timeout == pytest.approx(0.05)
    backend.close()
    assert not _running(pid)
    assert connection.closed
    assert [e.pid for e in arm.entries("Session.CloseSession")].count(pid) == 1
    assert not [e for e in arm.entries("Base.Stop") if e.pid == pid]   # nothing was frozen


def test_without_the_supervisor_no_process_and_no_session_is_added(arm, gen3):
    backend = gen3()
    assert backend.supervisor_pid is None and backend.supervisor_alive() is None
    assert {c.pid for c in arm.connections} == {os.getpid()}
