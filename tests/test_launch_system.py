"""`ros2 launch uvs_bringup ...` as a user runs it, driven with the `ros2` command line.

Each test starts the real upstream `ros2 launch` as a subprocess (its own session, so
signals reach it and its nodes as a terminal's Ctrl-C would), calls services and
parameters with `ros2 service call` / `ros2 param`, and reads /controller/status with
`ros2 topic echo`. They need launch, launch_ros and ros2cli (../shared/ros2-tools,
installed by .ci/run; any ROS 2 distribution has them) and skip where those are absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from uvs_core.robot import load_robot
from uvs_core.tasks import make_task

try:
    import launch_ros  # noqa: F401
    import ros2cli  # noqa: F401
    HAVE_TOOLS = shutil.which("ros2") is not None
except ImportError:
    HAVE_TOOLS = False
if not HAVE_TOOLS and os.environ.get("UVS_REQUIRE_LAUNCH_TESTS") == "1":
    # CI installs the tools (.ci/run): there, a skip would hide a broken front door.
    raise RuntimeError("UVS_REQUIRE_LAUNCH_TESTS=1 but launch, launch_ros or the ros2 "
                       "command is missing: run ../shared/ros2-tools/install.sh")

pytestmark = [
    pytest.mark.skipif(not HAVE_TOOLS, reason="launch, launch_ros and ros2cli are not "
                       "installed (not on PyPI): ../shared/ros2-tools/install.sh or a ROS 2 "
                       "distribution provides them"),
    pytest.mark.slow,
]

GEN3 = load_robot("gen3")
# Joint offsets from the task's start pose whose forward kinematics are the targets: a
# short, limit-free path from the start, so these tests measure the launch, not the
# estimators' reach (the benchmark and tests/test_servo_system.py do that).
OFFSETS = {
    "single_point": [[0.3, 0.5, 0.0, 0.6, 0.0, 0.4, 0.0], [-0.4, 0.3, 0.2, 0.9, 0.0, -0.3, 0.0]],
    "visual_servo": [[0.3, -0.4]],
    # tests/test_pose_live.py's pose: 0.33 m and 0.71 rad from the start pose
    "pose": [[0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4]],
}
# multi_point: target 7 of `uvs servo --task multi_point --targets 10 --seed 11`, which tj
# and the shipped nk_tanh reach from the straight start pose (a pose target needs a long
# path from there; most near ones pass a joint limit on the way).
MULTI_POINT_TARGET = (11, 10, 6)
START_TIMEOUT = 60.0   # s for the graph to come up on a loaded 2-core machine
SERVO_TIMEOUT = 45.0   # s for a target to be reached


def target(task_name: str, index: int = 0) -> list[float]:
    task = make_task(task_name, GEN3)
    if task_name == "multi_point":
        seed, count, which = MULTI_POINT_TARGET
        x = task.sample_targets(np.random.default_rng(seed), count)[which]
    else:
        x = task.x(np.asarray(task.home_active, float) + np.asarray(OFFSETS[task_name][index]))
    return [round(float(v), 6) for v in x]


def ros2(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run the `ros2` command as a user does (no daemon: nothing outlives the test)."""
    return subprocess.run(["ros2", *args], capture_output=True, text=True, timeout=timeout)


def param(verb: str, node: str, *args: str) -> str:
    """`ros2 param get|set NODE ...`, waiting up to 20 s for the node to be discovered."""
    result = ros2("param", verb, "--no-daemon", "--timeout", "20", node, *args)
    return (result.stdout + result.stderr).strip()


class Launched:
    """One `ros2 launch uvs_bringup FILE ARGS...` in a session of its own."""

    def __init__(self, log: Path, *arguments: str, launch_file: str = "servo.launch.py"):
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(["ros2", "launch", "uvs_bringup", launch_file, *arguments],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def text(self) -> str:
        return self.log_path.read_text()

    def node_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", self.text)]

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the launch log within {timeout:g} s:\n"
                             + self.text[-4000:])

    def interrupt(self, times: int = 1, gap: float = 0.05) -> None:
        """SIGINT to the whole session, as Ctrl-C in a terminal; `times` of them."""
        for i in range(times):
            if i:
                time.sleep(gap)
            os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        for pid in self.node_pids():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: it waits only for its parent to reap it.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.fixture
def launch(tmp_path):
    started: list[Launched] = []

    def start(*arguments: str, launch_file: str = "servo.launch.py") -> Launched:
        launched = Launched(tmp_path / f"launch{len(started)}.log", *arguments,
                            launch_file=launch_file)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.close()


def wait_for_graph(launched: Launched, nodes: list[str]) -> None:
    """The nodes are discoverable and the estimator serves (its model is loaded)."""
    launched.wait_for_log(r"serving /estimate_jacobian", START_TIMEOUT)
    deadline = time.monotonic() + START_TIMEOUT
    listed: set[str] = set()
    while time.monotonic() < deadline:
        result = ros2("node", "list", "--no-daemon")
        listed = set(result.stdout.split())
        if {f"/{n}" for n in nodes} <= listed:
            return
        time.sleep(0.5)
    raise AssertionError(f"nodes {nodes} not all listed: {sorted(listed)}")


def call(service: str, srv_type: str, request: str = "{}") -> str:
    result = ros2("service", "call", service, srv_type, request)
    assert result.returncode == 0, result.stderr
    return result.stdout


def servo_to(goal: list[float], tolerance_check: float) -> str:
    """Home, reset the estimator, set `goal`; echo /controller/status until converged.
    Returns the echoed status (YAML text)."""
    assert "success=True" in call("/driver/home", "std_srvs/srv/Trigger")
    assert "success=True" in call("/jacobian_estimator/reset", "std_srvs/srv/Trigger")
    answer = call("/controller/set_target", "uvs_interfaces/srv/SetTarget",
                  "{target: [" + ", ".join(map(str, goal)) + "]}")
    assert "success=True" in answer, answer
    first = goal[0]
    # Ends on an outcome; a halt (a stale state or a late estimator on a loaded machine)
    # is transient, the controller resumes by itself.
    status = ros2("topic", "echo", "--once", "--timeout", str(int(SERVO_TIMEOUT)),
                  "--filter", f"abs(m.target[0] - {first}) < 1e-6 and "
                              f"m.state_name in ('converged', 'stalled')",
                  "/controller/status", "uvs_interfaces/msg/ServoStatus",
                  timeout=SERVO_TIMEOUT + 30)
    if "state_name: converged" not in status.stdout:
        last = ros2("topic", "echo", "--once", "--timeout", "5", "/controller/status",
                    "uvs_interfaces/msg/ServoStatus")
        raise AssertionError(f"not converged within {SERVO_TIMEOUT:g} s: {status.stdout}"
                             f"{status.stderr}\nlast status:\n{last.stdout}")
    error = float(re.search(r"error_norm: ([0-9.e+-]+)", status.stdout).group(1))
    assert error < tolerance_check, status.stdout
    return status.stdout


GRAPHS = {
    "single_point": ["driver", "jacobian_estimator", "controller"],
    "multi_point": ["driver", "jacobian_estimator", "controller"],
    "visual_servo": ["driver", "jacobian_estimator", "controller", "sim_camera", "hue_tracker"],
    "pose": ["driver", "jacobian_estimator", "controller"],
}


@pytest.mark.parametrize("task_name", ["multi_point", "visual_servo", "pose"])
def test_each_task_launches_and_converges_to_a_reachable_target(launch, task_name):
    launched = launch(f"task:={task_name}", "estimator:=tj")
    wait_for_graph(launched, GRAPHS[task_name])
    assert param("get", "/controller", "task") == f"String value is: {task_name}"
    # 5 mm per point in metres (0.01 m over multi_point's 4 points), 2 px in the image:
    # the controller's own tolerances
    # pose: max(|p* - p|, 0.1 m/rad x angle) < 5 mm
    tolerance = {"multi_point": 0.0101, "pose": 0.0051}.get(task_name, 2.0)
    servo_to(target(task_name), tolerance_check=tolerance)
    if task_name == "multi_point":
        # and with the shipped learned model, swapped in as a user would
        assert param("set", "/jacobian_estimator", "estimator",
                     "nk_tanh") == "Set parameter successful"
        status = servo_to(target(task_name), tolerance_check=tolerance)
        assert "estimator: nk_tanh" in status


def test_single_point_default_launch_converges_swaps_estimator_and_rejects_bogus(launch):
    """The default launch (shipped nk_tanh) converges; `ros2 param set` swaps to tj
    mid-run and servoing goes on; an unknown name is refused with the reason."""
    launched = launch()
    wait_for_graph(launched, GRAPHS["single_point"])
    assert param("get", "/jacobian_estimator", "estimator") == "String value is: nk_tanh"
    status = servo_to(target("single_point", 0), tolerance_check=0.005)
    assert "estimator: nk_tanh" in status

    assert param("set", "/jacobian_estimator", "estimator", "tj") == "Set parameter successful"
    bogus = param("set", "/jacobian_estimator", "estimator", "bogus")
    assert bogus.startswith("Setting parameter failed"), bogus
    assert "unknown estimator 'bogus'" in bogus and "tj" in bogus, bogus
    assert param("get", "/jacobian_estimator", "estimator") == "String value is: tj"
    status = servo_to(target("single_point", 1), tolerance_check=0.005)
    assert "estimator: tj" in status


def test_double_sigint_stops_every_node_cleanly_and_the_arm_last(launch, tmp_path):
    """Ctrl-C twice 50 ms apart while servoing: every node exits 0 without a traceback,
    and the driver's last word is a zero command (its final /joint_states velocity)."""
    launched = launch("task:=visual_servo", "estimator:=tj")
    wait_for_graph(launched, GRAPHS["visual_servo"])
    echo_log = tmp_path / "joint_states.txt"
    with open(echo_log, "w") as out:
        # Its own session: the Ctrl-C below is the launch's, not the listener's.
        echo = subprocess.Popen(["ros2", "topic", "echo", "--no-daemon", "/joint_states",
                                 "sensor_msgs/msg/JointState", "--field", "velocity"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert "success=True" in call("/driver/home", "std_srvs/srv/Trigger")
        call("/controller/set_target", "uvs_interfaces/srv/SetTarget",
             "{target: [" + ", ".join(map(str, target("visual_servo"))) + "]}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _moving(echo_log.read_text()):
            time.sleep(0.05)
        assert _moving(echo_log.read_text()), "the arm never moved"
        launched.interrupt(times=2, gap=0.05)
        try:
            assert launched.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            # Upstream launch itself can hang after repeated SIGINTs once every process
            # has finished (ros2/launch#207, ros2/launch_ros#199; seen once here on a
            # loaded machine, the nodes all gone). What this test asserts is the
            # nodes' exit and the arm's last command, checked below either way.
            warnings.warn("ros2 launch did not exit within 30 s of a double SIGINT",
                          stacklevel=1)
        time.sleep(1.0)
    finally:
        echo.send_signal(signal.SIGINT)
        echo.wait(timeout=10)
    log = launched.text
    assert "Traceback" not in log, log[-4000:]
    for name in GRAPHS["visual_servo"]:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", log), (name, log)
    assert "[driver]: shutdown: commanded zero joint velocity" in log
    assert not any(_alive(pid) for pid in launched.node_pids())
    velocities = _velocity_lists(echo_log.read_text())
    assert velocities[-1] == [0.0] * 7, velocities[-5:]


def _velocity_lists(text: str) -> list[list[float]]:
    return [[float(v) for v in re.findall(r"-?[0-9.]+(?:e[+-]?\d+)?", block)]
            for block in re.findall(r"array\('d', \[([^\]]*)\]\)", text)] or [
        [float(v) for v in line.strip("[] ").split(",") if v.strip()]
        for line in text.splitlines() if line.startswith("[")]


def _moving(text: str) -> bool:
    return any(any(abs(v) > 1e-3 for v in velocity) for velocity in _velocity_lists(text))


def test_gen3_without_kortex_api_stops_the_whole_launch_with_the_reason(launch):
    try:
        import kortex_api  # noqa: F401
        pytest.skip("kortex_api is installed here")
    except ImportError:
        pass
    launched = launch("backend:=gen3", "estimator:=tj")
    code = launched.wait(timeout=60)
    log = launched.text
    assert code != 0
    assert re.search(r"\[driver\]: the gen3 backend needs Kinova's Kortex Python API", log), log
    assert "node 'driver' exited with code 1" in log
    pids = launched.node_pids()
    assert len(pids) == 3
    assert not any(_alive(pid) for pid in pids), "a uvs node outlived the launch"


@pytest.mark.parametrize(("arguments", "message"), [
    (["estimator:=bogus"], r'Argument "estimator" provided value "bogus" is not valid\. '
                           r"Valid options are: \['tj', 'broyden', 'llknn'"),
    (["rviz:=true"], r"rviz:=true, but rviz2 is not installed"),
    (["video_device:=cam"], r"video_device must be an integer"),
    (["task:=visual_servo", "camera:=webcam"], r"camera 'webcam' needs backend 'gen3'"),
    (["robot:=bogus"], r"robot 'bogus': no file bogus\.yaml"),
    (["backend:=gen3", "robot:=ur5e"], r"backend 'gen3' drives a Kinova Gen3 \(gen3, "
                                       r"gen3_6dof\), not robot 'ur5e'"),
])
def test_bad_arguments_fail_before_any_node_starts(launch, arguments, message):
    if "rviz:=true" in arguments and shutil.which("rviz2"):
        pytest.skip("rviz2 is installed here")
    launched = launch(*arguments)
    assert launched.wait(timeout=60) == 1
    assert re.search(message, launched.text), launched.text
    assert launched.node_pids() == []


UR5E = load_robot("ur5e")
# A short, limit-free path from the UR5e's home (shoulder pan, lift, elbow, wrists).
UR5E_OFFSET = [0.4, 0.3, -0.4, 0.2, 0.3, 0.0]


def test_ur5e_launch_converges_with_tj_and_with_its_learned_model(launch):
    """robot:=ur5e: every node loads the UR5e; tj converges, then the UR5e's shipped
    nk_tanh (models/ur5e/single_point), swapped in as a user would."""
    launched = launch("robot:=ur5e", "estimator:=tj")
    wait_for_graph(launched, GRAPHS["single_point"])
    for node in GRAPHS["single_point"]:
        assert param("get", f"/{node}", "robot") == "String value is: ur5e", node
    assert re.search(r"\[driver\]: sim backend, robot ur5e", launched.text)
    task = make_task("single_point", UR5E)
    goal = [round(float(v), 6) for v in task.x(np.asarray(task.home_active, float)
                                               + np.asarray(UR5E_OFFSET))]
    status = servo_to(goal, tolerance_check=0.005)
    assert "estimator: tj" in status
    assert param("set", "/jacobian_estimator", "estimator",
                 "nk_tanh") == "Set parameter successful"
    assert re.search(r"models/ur5e/single_point/nk_tanh", launched.text)
    status = servo_to(goal, tolerance_check=0.005)
    assert "estimator: nk_tanh" in status
    assert "Traceback" not in launched.text


def test_deprecated_robot_sim_still_selects_the_sim_and_says_what_to_write(launch):
    launched = launch("robot:=sim", "estimator:=tj")
    wait_for_graph(launched, GRAPHS["single_point"])
    log = launched.text
    warnings = re.findall(r"robot:=sim is deprecated.*", log)
    assert len(warnings) == 1 and "write backend:=sim" in warnings[0], log[-3000:]
    assert re.search(r"\[driver\]: sim backend, robot gen3", log), log[-3000:]
    assert param("get", "/controller", "robot") == "String value is: gen3"
    servo_to(target("single_point", 0), tolerance_check=0.005)


def test_record_without_ros2_bag_falls_back_to_the_uvs_recorder(launch, tmp_path):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "servo_bag"
    launched = launch("estimator:=tj", "record:=true", f"bag:={bag}")
    wait_for_graph(launched, GRAPHS["single_point"] + ["recorder"])
    if "ros2 bag record" in launched.text:
        pytest.skip("ros2 bag is installed here: the launch records with it")
    assert "recording" in launched.text and "uvs's own recorder" in launched.text
    servo_to(target("single_point", 0), tolerance_check=0.005)
    launched.interrupt()
    assert launched.wait(timeout=30) == 0
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/joint_states"] > 20 and counts["/controller/status"] > 20, counts
    assert "Traceback" not in launched.text


def test_babble_launch_writes_a_bag_that_uvs_train_reads(launch, tmp_path):
    from uvs_core.dataset import read_bag

    bag = tmp_path / "babble_bag"
    launched = launch("trajectories:=3", f"bag:={bag}", launch_file="babble.launch.py")
    assert launched.wait(timeout=120) == 0, launched.text[-3000:]
    data = read_bag(bag)
    assert len(data) == 300
    assert len(np.unique(data.traj)) == 3
    assert data.task == "single_point" and data.q.shape == (300, 7) and data.x.shape == (300, 3)
    # x is the model's end-effector position of q: the driver's task state, recorded
    task = make_task("single_point", GEN3)
    np.testing.assert_allclose(task.x(data.q), data.x, atol=1e-9)
    assert "Traceback" not in launched.text


def test_babble_launch_servo_mode_records_the_servo_babblers_targets(launch, tmp_path):
    """babble.launch.py mode:=servo: the paper's real-arm babbling, through the driver."""
    from uvs_core.babble import servo_law
    from uvs_core.dataset import read_bag

    bag = tmp_path / "servo_bag"
    launched = launch("mode:=servo", "trajectories:=2", f"bag:={bag}",
                      launch_file="babble.launch.py")
    assert launched.wait(timeout=120) == 0, launched.text[-3000:]
    data = read_bag(bag)
    assert len(data) == 200 and data.targets is not None and data.commands is not None
    task = make_task("single_point", GEN3)
    sent = np.all(np.isfinite(data.commands), axis=1)
    law = np.array([servo_law(task, q, x, t) for q, x, t in
                    zip(data.q[sent], data.x[sent], data.targets[sent])])
    exact = np.all(np.abs(data.commands[sent] - law) < 1e-9, axis=1)
    assert 0.85 < exact.mean() < 1.0, exact.mean()      # ~5 % carry noise (seed 0: some)
    assert "Traceback" not in launched.text
