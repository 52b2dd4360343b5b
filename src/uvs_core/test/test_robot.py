"""Robot model: YAML loading, forward kinematics, Jacobians, limits."""

import dataclasses
import math

import numpy as np
import pytest

from uvs_core.paths import source_root
from uvs_core.robot import Robot, available_robots, load_robot


def test_gen3_description(gen3):
    assert gen3.name == "gen3"
    assert gen3.n == 7
    assert gen3.joint_names == tuple(f"joint_{i}" for i in range(1, 8))
    np.testing.assert_array_equal(gen3.continuous, [True, False, True, False, True, False, True])
    np.testing.assert_allclose(gen3.upper[[1, 3, 5]], [2.2497, 2.5796, 2.0996])
    np.testing.assert_allclose(gen3.lower[[1, 3, 5]], [-2.2497, -2.5796, -2.0996])
    assert np.all(np.isinf(gen3.upper[gen3.continuous]))
    np.testing.assert_allclose(gen3.velocity_limits, [1.396] * 4 + [1.222] * 3)
    np.testing.assert_array_equal(gen3.home, np.zeros(7))
    assert gen3.tool_offset == pytest.approx(0.12)


def _rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF rpy (fixed axes x, y, z) -> (3, 3) rotation."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch),
                              math.sin(pitch), math.cos(yaw), math.sin(yaw))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


# ros2_kortex kortex_description, arms/gen3/6dof/urdf/gen3_macro.xacro: the origins
# (xyz m, rpy rad) of joint_1 .. joint_6 (axis z each) and of the fixed end_effector joint.
_KORTEX_6DOF_JOINTS = [
    ((0.0, 0.0, 0.15643), (-3.1416, 0.0, 0.0)),
    ((0.0, 0.005375, -0.12838), (1.5708, 0.0, 0.0)),
    ((0.0, -0.41, 0.0), (3.1416, 0.0, 0.0)),
    ((0.0, 0.20843, -0.006375), (1.5708, 0.0, 0.0)),
    ((0.0, -0.00017505, -0.10593), (-1.5708, 0.0, 0.0)),
    ((0.0, 0.10593, -0.00017505), (1.5708, 0.0, 0.0)),
]
_KORTEX_6DOF_END_EFFECTOR = ((0.0, 0.0, -0.061525), (math.pi, 0.0, math.pi))


def _kortex_6dof_end_effector(q: np.ndarray) -> np.ndarray:
    def origin(xyz, rpy):
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = _rpy(*rpy), xyz
        return t

    t = np.eye(4)
    for (xyz, rpy), angle in zip(_KORTEX_6DOF_JOINTS, q):
        turn = np.eye(4)
        turn[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        t = t @ origin(xyz, rpy) @ turn
    return t @ origin(*_KORTEX_6DOF_END_EFFECTOR)


def test_gen3_6dof_matches_kortex_description(rng):
    """The user guide's 6-DOF DH table and kortex_description's URDF: the same
    end_effector_link (the flange) within 0.4 mm and 1e-4 rad, joint zeros and directions
    included (kortex's xacro rounds the offsets, e.g. 0.15643 + 0.12838 m vs 0.2848 m)."""
    robot = dataclasses.replace(load_robot("gen3_6dof"), tool_offset=0.0)
    assert robot.n == 6 and robot.continuous.tolist() == [True, False, False, True, False,
                                                          True]
    np.testing.assert_allclose(robot.upper[[1, 2, 4]], [2.24, 2.57, 2.09])
    for q in rng.uniform(-math.pi, math.pi, size=(200, 6)):
        ours, theirs = robot.fk(q), _kortex_6dof_end_effector(q)
        np.testing.assert_allclose(ours[:3, 3], theirs[:3, 3], atol=4e-4)
        np.testing.assert_allclose(ours[:3, :3], theirs[:3, :3], atol=1e-4)
    # Straight up at q = 0; with the 0.12 m gripper the tool point is above the flange.
    np.testing.assert_allclose(load_robot("gen3_6dof").position(np.zeros(6)),
                               [0.0, 0.001, 1.1765 + 0.12], atol=1e-9)


def test_robot_is_immutable(gen3):
    with pytest.raises(dataclasses.FrozenInstanceError):
        gen3.tool_offset = 0.2
    with pytest.raises(ValueError):
        gen3.home[0] = 1.0


def test_gen3_fk_at_zero_interface_module(gen3_no_tool, gen3):
    """Reference: the interface module is at (0, -0.0246, 1.1873) m at q = 0."""
    np.testing.assert_allclose(gen3_no_tool.position(np.zeros(7)), [0.0, -0.0246, 1.1873],
                               atol=1e-4)
    # The arm points straight up, so the 0.12 m tool only adds to z.
    np.testing.assert_allclose(gen3.position(np.zeros(7)), [0.0, -0.0246, 1.1873 + 0.12],
                               atol=1e-4)


def test_gen3_fk_at_kinova_home(gen3_no_tool):
    """Reference: at Kinova's Home the interface module is at about (0.457, 0.001, 0.434) m."""
    q = np.array([0.0, 0.26, 3.14, -2.27, 0.0, 0.96, 1.57])
    np.testing.assert_allclose(gen3_no_tool.position(q), [0.457, 0.001, 0.434], atol=2e-3)


def test_ur5e_fk_at_zero(ur5e):
    """Standard UR DH at q = 0: (a2 + a3, -(d4 + d6), d1 - d5)."""
    np.testing.assert_allclose(ur5e.position(np.zeros(6)), [-0.8172, -0.2329, 0.0628],
                               atol=1e-12)
    assert ur5e.upper[2] == pytest.approx(math.pi)       # "pi" parsed from the YAML


def test_fk_is_a_rigid_transform(gen3, rng):
    t = gen3.fk(gen3.sample(rng, 50))
    r = t[:, :3, :3]
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_array_equal(t[:, 3], np.broadcast_to([0, 0, 0, 1], (50, 4)))


def test_tool_offset_along_flange_z(gen3, gen3_no_tool, rng):
    q = gen3.sample(rng, 20)
    flange = gen3_no_tool.fk(q)
    np.testing.assert_allclose(gen3.position(q), flange[:, :3, 3] + 0.12 * flange[:, :3, 2],
                               atol=1e-12)


def test_frames_end_at_base_and_tool(gen3, rng):
    q = gen3.sample(rng, 4)
    frames = gen3.frames(q)
    assert frames.shape == (4, 9, 4, 4)
    np.testing.assert_array_equal(frames[:, 0], np.broadcast_to(np.eye(4), (4, 4, 4)))
    np.testing.assert_allclose(frames[:, -1], gen3.fk(q), atol=1e-15)
    # At q = 0 every frame origin sits on the vertical line through the arm.
    origins = gen3.frames(np.zeros(7))[:, :2, 3]
    assert np.all(np.abs(origins) <= 0.0246 + 1e-12)


@pytest.mark.parametrize("robot_name", ["gen3", "gen3_6dof", "ur5e"])
def test_position_jacobian_matches_finite_differences(robot_name, rng, central_difference):
    """Cross-product Jacobian vs central differences (error bound ~1e-11 m/rad, see
    conftest._central_difference); tolerance 1e-8."""
    robot = load_robot(robot_name)
    for q in robot.sample(rng, 5):
        numeric = central_difference(robot.position, q)
        assert robot.jacobian(q).shape == (3, robot.n)
        np.testing.assert_allclose(robot.jacobian(q), numeric, atol=1e-8)


@pytest.mark.parametrize("robot_name", ["gen3", "gen3_6dof", "ur5e"])
def test_pose_jacobian_matches_finite_differences(robot_name, rng):
    """Angular rows: dR/dq_i R^T = skew(w_i), by central differences of R."""
    robot = load_robot(robot_name)
    h = 1e-5
    for q in robot.sample(rng, 5):
        jac = robot.jacobian(q, kind="pose")
        assert jac.shape == (6, robot.n)
        np.testing.assert_allclose(jac[:3], robot.jacobian(q), atol=1e-15)
        rot = robot.fk(q)[:3, :3]
        for i in range(robot.n):
            e = np.zeros(robot.n)
            e[i] = h
            s = (robot.fk(q + e)[:3, :3] - robot.fk(q - e)[:3, :3]) / (2 * h) @ rot.T
            np.testing.assert_allclose(s, -s.T, atol=1e-8)      # skew-symmetric
            np.testing.assert_allclose(jac[3:, i], [s[2, 1], s[0, 2], s[1, 0]], atol=1e-8)


@pytest.mark.parametrize("robot_name", ["gen3", "gen3_6dof", "ur5e"])
def test_batched_equals_looped(robot_name, rng):
    robot = load_robot(robot_name)
    q = robot.sample(rng, 6)
    for fn in (robot.frames, robot.fk, robot.position, robot.jacobian,
               lambda x: robot.jacobian(x, kind="pose")):
        batched = fn(q)
        looped = np.stack([fn(row) for row in q])
        np.testing.assert_allclose(batched, looped, atol=1e-14)
        # Any leading shape: (2, 3, n) -> (2, 3, ...).
        np.testing.assert_allclose(fn(q.reshape(2, 3, robot.n)),
                                   batched.reshape(2, 3, *batched.shape[1:]), atol=1e-14)


@pytest.mark.parametrize("robot_name", ["gen3", "gen3_6dof", "ur5e"])
def test_single_configuration_fast_path_equals_batched(robot_name, rng):
    """q (n,) takes _chain_single (cached rows, 4x4 products), (B, n) the batched walk."""
    robot = load_robot(robot_name)
    q = np.vstack([robot.sample(rng, 20), robot.home, 1e3 * rng.standard_normal(robot.n)])
    for fn in (robot.frames, robot.fk, robot.position, robot.jacobian,
               lambda x: robot.jacobian(x, kind="pose")):
        batched = fn(q)
        for row, want in zip(q, batched):
            got = fn(row)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("robot_name", ["gen3", "gen3_6dof", "ur5e"])
def test_single_configuration_jacobian_is_the_batched_bit_for_bit(robot_name, rng):
    """The fast path makes the same products and differences, not merely close ones."""
    robot = load_robot(robot_name)
    q = robot.sample(rng, 200)
    for kind in ("position", "pose"):
        batched = robot.jacobian(q, kind=kind)
        for row, want in zip(q, batched):
            np.testing.assert_array_equal(robot.jacobian(row, kind=kind), want)
    np.testing.assert_array_equal(np.stack([robot.fk(row) for row in q]), robot.fk(q))


def test_single_configuration_tasks_equal_batched(gen3, rng):
    from uvs_core.tasks import make_task

    q = gen3.sample(rng, 10)
    for name in ("single_point", "multi_point", "visual_servo"):
        task = make_task(name, gen3)
        qa = task.select(q)
        batched, xs = task.jacobian(qa), task.x(qa)
        for i, row in enumerate(qa):
            np.testing.assert_allclose(task.jacobian(row), batched[i], rtol=0, atol=1e-12)
            np.testing.assert_allclose(task.x(row), xs[i], rtol=0, atol=1e-12)


def test_wrong_q_shape_raises(gen3):
    with pytest.raises(ValueError, match="shape"):
        gen3.position(np.zeros(6))


def test_clip_and_in_limits(gen3):
    q = np.array([[10.0, 3.0, -10.0, -3.0, 7.0, 0.5, -7.0],
                  [0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0]])
    clipped, hit = gen3.clip(q)
    np.testing.assert_array_equal(clipped[0], [10.0, 2.2497, -10.0, -2.5796, 7.0, 0.5, -7.0])
    np.testing.assert_array_equal(hit[0], [False, True, False, True, False, False, False])
    np.testing.assert_array_equal(clipped[1], q[1])
    assert not hit[1].any()
    np.testing.assert_array_equal(gen3.in_limits(q), [False, True])
    assert gen3.in_limits(clipped).all()


def test_sample_within_limits(gen3, rng):
    q = gen3.sample(rng, 20000)
    assert q.shape == (20000, 7)
    assert gen3.in_limits(q).all()
    cont = q[:, gen3.continuous]
    assert cont.min() >= -math.pi and cont.max() < math.pi
    assert cont.min() < -3.1 and cont.max() > 3.1                   # spans the circle
    assert q[:, 1].min() < -2.2 and q[:, 1].max() > 2.2              # spans joint 2's range


def test_load_by_path_and_listing(tmp_path, gen3):
    path = tmp_path / "my_arm.yaml"
    path.write_text((source_root() / "config" / "robots" / "gen3.yaml").read_text()
                    .replace("name: gen3", "name: my_arm"))
    robot = load_robot(str(path))
    assert robot.name == "my_arm" and robot.source == str(path)
    np.testing.assert_allclose(robot.position(np.zeros(7)), gen3.position(np.zeros(7)))
    assert {"gen3", "gen3_6dof", "ur5e"} <= set(available_robots())


def test_share_directory_is_searched_first(tmp_path, monkeypatch):
    packages = pytest.importorskip("ament_index_python.packages")
    robots = tmp_path / "share" / "uvs_core" / "config" / "robots"
    robots.mkdir(parents=True)
    text = (source_root() / "config" / "robots" / "gen3.yaml").read_text()
    (robots / "gen3.yaml").write_text(text.replace("tool_offset: 0.12", "tool_offset: 0.2"))
    monkeypatch.setattr(packages, "get_package_share_directory",
                        lambda name: str(tmp_path / "share" / name))
    assert load_robot("gen3").tool_offset == pytest.approx(0.2)
    assert load_robot("ur5e").name == "ur5e"         # not in the share: source tree

    def missing(name):
        raise packages.PackageNotFoundError(name)

    monkeypatch.setattr(packages, "get_package_share_directory", missing)
    assert load_robot("gen3").tool_offset == pytest.approx(0.12)


def test_unknown_robot_name(tmp_path):
    with pytest.raises(ValueError, match="no_such_arm"):
        load_robot("no_such_arm")
    with pytest.raises(ValueError, match="cannot read"):
        load_robot(str(tmp_path / "absent.yaml"))


GOOD = """
name: two_link
dh:
  - {joint: a, a: 1.0}
  - {joint: b, a: 0.5}
joints:
  a: {lower: -1.0, upper: 1.0, velocity: 1.0}
  b: {continuous: true, velocity: 2.0}
home: [0.0, 0.5]
"""


def test_from_dict_minimal_planar_arm(tmp_path):
    path = tmp_path / "two_link.yaml"
    path.write_text(GOOD)
    robot = load_robot(str(path))
    q = np.array([0.3, 0.4])
    expected = [math.cos(0.3) + 0.5 * math.cos(0.7), math.sin(0.3) + 0.5 * math.sin(0.7), 0.0]
    np.testing.assert_allclose(robot.position(q), expected, atol=1e-15)
    np.testing.assert_allclose(robot.jacobian(q)[:2],
                               [[-expected[1], -0.5 * math.sin(0.7)],
                                [expected[0], 0.5 * math.cos(0.7)]], atol=1e-15)


@pytest.mark.parametrize("text, problem", [
    ("dh: [", "invalid YAML"),
    ("- 1\n- 2\n", "mapping"),
    (GOOD.replace("joints:", "limits:"), "missing key"),
    (GOOD.replace("lower: -1.0, upper: 1.0", "lower: 1.0, upper: -1.0"), "lower must be < upper"),
    (GOOD.replace("home: [0.0, 0.5]", "home: [2.0, 0.5]"), "outside the joint limits"),
    (GOOD.replace("home: [0.0, 0.5]", "home: [0.0]"), "home"),
    (GOOD.replace("velocity: 2.0", "velocity: 0.0"), "velocity limit"),
    (GOOD.replace("b: {continuous", "c: {continuous"), "do not match"),
    (GOOD.replace("a: 1.0}", "a: one}"), "expected a number"),
    (GOOD.replace("{joint: b,", "{joint: b, bogus: 1,"), "unknown key"),
])
def test_invalid_yaml_names_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        load_robot(str(path))
    assert str(path) in str(info.value)


def test_from_dict_rejects_non_mapping():
    with pytest.raises(ValueError, match="mapping"):
        Robot.from_dict([1, 2])
