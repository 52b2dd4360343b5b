"""run_node(): the main() of every uvs node, run as a process and signalled as a
terminal, `ros2 launch` and `timeout` do."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from std_msgs.msg import String

SCRIPT = str(Path(__file__).with_name("_node_main.py"))


def _start(mode: str, topic: str = "run_node_test") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SCRIPT, mode, topic], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


class _Listener:
    def __init__(self, context, topic: str):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node("run_node_listener", context=context)
        self.received: list[str] = []
        self.node.create_subscription(String, topic, lambda m: self.received.append(m.data), 100)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.received):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


@pytest.mark.parametrize(("signals", "gap"), [
    ((signal.SIGINT,), 0.0),
    ((signal.SIGINT, signal.SIGINT), 0.05),       # a double Ctrl-C
    ((signal.SIGINT,) * 3, 0.0),
    ((signal.SIGINT,) * 8, 0.002),                  # a burst: no lock in the handler
    ((signal.SIGTERM,), 0.0),                       # `timeout`, launch's escalation
    ((signal.SIGINT, signal.SIGTERM), 0.01),
])
def test_signals_end_the_node_cleanly_after_its_last_word(ros_context, signals, gap):
    topic = f"run_node_{len(signals)}_{int(gap * 1000)}_{signals[-1]}"
    listener = _Listener(ros_context, topic)
    proc = _start("spin", topic)
    try:
        assert listener.wait_for(lambda r: len(r) >= 10, 30.0), "the node never published"
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)
            proc.send_signal(sig)
        output, _ = proc.communicate(timeout=20)
        assert listener.wait_for(lambda r: "last" in r, 5.0), listener.received[-3:]
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert f"[talker]: {signal.Signals(signals[0]).name}: shutting down" in output
    assert listener.received[-1] == "last"


def test_a_fatal_error_while_building_is_one_line_and_exit_code_1():
    proc = _start("fatal")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in output
    assert "[FATAL]" in output and "parameter 'rate' must be > 0; got -1" in output


def test_a_finished_job_exits_with_the_nodes_exit_code():
    proc = _start("finish")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, output
    assert "Traceback" not in output


def test_an_unexpected_callback_error_is_logged_with_its_traceback_and_exit_code_1():
    proc = _start("crash")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, output
    assert "unexpected error in a callback" in output
    assert "ZeroDivisionError: division by zero in a callback" in output
