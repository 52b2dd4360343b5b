"""docs/bring-your-own-robot.md: every command of its `bash` blocks runs, in order, in a
folder holding a copy of config/robots/panda.urdf as my_arm.urdf, with smaller sizes.

A `ros2 launch` line starts the launch in the background and waits for its graph; the
block's next lines run against it; at the block's end the launch gets SIGINT and must
exit 0. `ros2 run robot_state_publisher ...` is run as is where robot_state_publisher is
installed, else stood in for by a node of this test publishing the same URDF the same
way (reliable, transient-local)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bring-your-own-robot.md"
URDF = ROOT / "config" / "robots" / "panda.urdf"

try:
    import launch_ros  # noqa: F401
    import ros2cli  # noqa: F401
    HAVE_TOOLS = shutil.which("ros2") is not None
except ImportError:
    HAVE_TOOLS = False

# Sizes for a 2-core machine: (pattern, replacement) on each command line.
SMALLER = [
    (r"--samples \d+", "--samples 3000"),
    (r"--epochs \d+", "--epochs 2"),
    (r"--targets \d+", "--targets 1"),
    (r"--quick", "--quick --estimators tj,nk_tanh --samples 3000 --epochs 1 --targets 2 "
                 "--seeds 1"),
    (r"^uvs servo (.*)$", r"uvs servo \1 --duration 5"),
]
LAUNCH_READY = r"\[controller\]: task single_point"
START_TIMEOUT = 90.0


def blocks(text: str) -> list[list[str]]:
    """The command lines of each ```bash block (comments and blank lines dropped)."""
    found = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    return [[line.strip() for line in block.splitlines()
             if line.strip() and not line.strip().startswith("#")] for block in found]


def smaller(line: str) -> str:
    for pattern, replacement in SMALLER:
        line = re.sub(pattern, replacement, line)
    return line


def test_page_lists_the_whole_route():
    commands = [line for block in blocks(PAGE.read_text()) for line in block]
    verbs = [" ".join(line.split()[:2]) for line in commands]
    for verb in ("uvs benchmark", "uvs collect", "uvs train", "uvs servo", "ros2 launch"):
        assert verb in verbs, verb
    assert any("robot:=robot_description" in line for line in commands)
    assert any("robot:=$PWD/my_arm.urdf" in line for line in commands)
    assert "bring-your-own-robot.md" in (ROOT / "README.md").read_text()


class _Launch:
    def __init__(self, line: str, cwd: Path, log: Path):
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log.read_text()):
                return
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout:g} s:\n"
                             + self.log.read_text()[-3000:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=5)
        finally:
            self._out.close()


class _DescriptionPublisher:
    """What `ros2 run robot_state_publisher ...` does for uvs: the URDF, latched."""

    def __init__(self, xml: str):
        import rclpy
        from rclpy.context import Context
        from rclpy.node import Node
        from std_msgs.msg import String

        from uvs_ros.qos import LATCHED_QOS

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("robot_state_publisher", context=self.context)
        self.publisher = self.node.create_publisher(String, "robot_description",
                                                    LATCHED_QOS)
        self.publisher.publish(String(data=xml))

    def stop(self) -> int:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TOOLS, reason="launch, launch_ros and ros2cli are not "
                    "installed: ../shared/ros2-tools/install.sh")
def test_every_command_of_the_page_runs(tmp_path):
    shutil.copy(URDF, tmp_path / "my_arm.urdf")
    ran = _run_page(tmp_path)
    assert len(ran) >= 10
    assert (tmp_path / "my_arm_bench" / "report.md").is_file()
    assert (tmp_path / "my_arm_nk_tanh" / "metadata.json").is_file()
    logs = {path.name: path.read_text() for path in tmp_path.glob("launch*.log")}
    assert len(logs) == 2, sorted(logs)
    by_path, by_topic = (logs[name] for name in sorted(logs))
    # the URDF path: the model is named after the file; the learned model swapped in live
    assert "on robot 'my_arm'" in by_path
    assert "estimator 'tj' -> 'nk_tanh'" in by_path
    assert "robot_state_publisher" in by_path or "not installed" in by_path
    # robot_description: the URDF's own name, and no robot_state_publisher of uvs's
    assert "on robot 'panda'" in by_topic
    assert "no uvs robot_state_publisher" in by_topic


def _run_page(tmp_path: Path) -> list[str]:
    """Run the page's blocks in tmp_path; return the commands run."""
    from uvs_bringup.launch_support import package_available

    ran = []
    for b, block in enumerate(blocks(PAGE.read_text())):
        background = []
        try:
            for line in block:
                line = smaller(line)
                ran.append(line)
                if line.startswith("ros2 run robot_state_publisher") and not \
                        package_available("robot_state_publisher"):
                    background.append(_DescriptionPublisher((tmp_path / "my_arm.urdf")
                                                            .read_text()))
                elif line.startswith("ros2 launch"):
                    launch = _Launch(line, tmp_path, tmp_path / f"launch{b}.log")
                    background.append(launch)
                    launch.wait_for(LAUNCH_READY, START_TIMEOUT)
                    launch.wait_for(r"\[jacobian_estimator\]: serving", START_TIMEOUT)
                else:
                    args = ["--no-daemon", "--timeout", "20"] if line.startswith(
                        "ros2 param") else []
                    if args:
                        line = line.replace("ros2 param set", "ros2 param set " + " ".join(
                            args), 1)
                    result = subprocess.run(["bash", "-c", line], cwd=tmp_path,
                                            capture_output=True, text=True, timeout=600)
                    assert result.returncode == 0, (line, result.stdout[-2000:],
                                                    result.stderr[-2000:])
                    assert "rejected" not in result.stdout + result.stderr, line
                    assert "failed" not in result.stdout.lower() or line.startswith("uvs"), \
                        (line, result.stdout)
        finally:
            for job in reversed(background):
                code = job.stop()
                if isinstance(job, _Launch):
                    assert code == 0, job.log.read_text()[-3000:]
    return ran
