"""Robots from URDF: the chain against pinocchio, against the DH descriptions, bad URDFs,
prismatic joints in the model, the sim, the estimators and the servo loop."""

import dataclasses

import numpy as np
import pinocchio as pin
import pytest

from uvs_core.paths import source_root
from uvs_core.robot import Robot, load_robot
from uvs_core.urdf_model import parse_urdf

CONFIG = source_root() / "config" / "robots"
SAMPLES = 100

# Oblique axes, negative axes, fixed joints before, between and after the moving ones,
# an oblique prismatic joint, and a finger off the chain (so tip_link must be given).
SYNTHETIC = """<?xml version="1.0"?>
<robot name="synthetic">
  <link name="world"/><link name="base"/><link name="a"/><link name="a2"/><link name="b"/>
  <link name="c"/><link name="d"/><link name="tip"/><link name="finger"/>
  <joint name="mount" type="fixed"><parent link="world"/><child link="base"/>
    <origin xyz="0.1 -0.2 0.3" rpy="0.2 -0.1 0.4"/></joint>
  <joint name="j1" type="continuous"><parent link="base"/><child link="a"/>
    <origin xyz="0 0 0.2" rpy="0 0 0.3"/><axis xyz="0 0 1"/><limit velocity="2.0" effort="1"/>
  </joint>
  <joint name="spacer" type="fixed"><parent link="a"/><child link="a2"/>
    <origin xyz="0.05 0.02 0.1" rpy="-0.7 0.3 1.1"/></joint>
  <joint name="j2" type="revolute"><parent link="a2"/><child link="b"/>
    <origin xyz="0.3 0.01 -0.02" rpy="1.2 -0.4 0.2"/><axis xyz="0.3 -0.5 0.8"/>
    <limit lower="-2.0" upper="1.5" velocity="1.0" effort="1"/></joint>
  <joint name="slide" type="prismatic"><parent link="b"/><child link="c"/>
    <origin xyz="0.1 0.2 0.05" rpy="0.1 0.2 0.3"/><axis xyz="1 1 0"/>
    <limit lower="-0.1" upper="0.25" velocity="0.4" effort="1"/></joint>
  <joint name="j4" type="revolute"><parent link="c"/><child link="d"/>
    <origin xyz="0 0.15 0" rpy="0 0.5 0"/><axis xyz="0 -1 0"/>
    <limit lower="-3.0" upper="3.0" velocity="0.5" effort="1"/></joint>
  <joint name="flange" type="fixed"><parent link="d"/><child link="tip"/>
    <origin xyz="0.02 0.03 0.12" rpy="0.3 0.2 -0.6"/></joint>
  <joint name="finger_joint" type="prismatic"><parent link="d"/><child link="finger"/>
    <axis xyz="0 1 0"/><limit lower="0" upper="0.04" velocity="0.1" effort="1"/></joint>
</robot>
"""

# (URDF text, base link, tip link) checked against pinocchio
CASES = {
    "synthetic": (SYNTHETIC, "world", "tip"),
    "synthetic_mid_base": (SYNTHETIC, "base", "tip"),
    "gen3": ((CONFIG / "gen3.urdf").read_text(), None, None),
    "ur5e": ((CONFIG / "ur5e.urdf").read_text(), "base_link_inertia", "tool0"),
    "panda": ((CONFIG / "panda.urdf").read_text(), None, None),
    "scara": ((CONFIG / "scara.urdf").read_text(), None, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fk_and_jacobians_equal_pinocchio(case, pin_q, configurations):
    """Tip frame, 3xn and 6xn geometric Jacobians (base-frame axes) to 1e-9."""
    xml, base, tip = CASES[case]
    robot = Robot.from_urdf(xml, base_link=base, tip_link=tip)
    model = pin.buildModelFromXML(xml)
    data = model.createData()
    base_id = model.getFrameId(robot.link_names[0])
    tip_id = model.getFrameId(tip or robot.link_names[-1])
    cols = [model.joints[model.getJointId(name)].idx_v for name in robot.joint_names]
    q = configurations(robot, len(case), SAMPLES)
    fk, jac_pos, jac_pose = robot.fk(q), robot.jacobian(q), robot.jacobian(q, kind="pose")
    for i, row in enumerate(q):
        pq = pin_q(model, robot, row)
        pin.framesForwardKinematics(model, data, pq)
        o_base = data.oMf[base_id]
        expected = (o_base.inverse() * data.oMf[tip_id]).homogeneous
        np.testing.assert_allclose(fk[i], expected, atol=1e-9)
        world = pin.computeFrameJacobian(model, data, pq, tip_id, pin.LOCAL_WORLD_ALIGNED)
        rot = o_base.rotation.T                     # world -> base axes
        expected_jac = np.vstack([rot @ world[:3, cols], rot @ world[3:, cols]])
        np.testing.assert_allclose(jac_pose[i], expected_jac, atol=1e-9)
        np.testing.assert_allclose(jac_pos[i], expected_jac[:3], atol=1e-9)
    # The single-configuration fast path gives the batched numbers.
    np.testing.assert_allclose(robot.jacobian(q[0], kind="pose"), jac_pose[0], atol=1e-12)
    np.testing.assert_allclose(robot.fk(q[0]), fk[0], atol=1e-12)


@pytest.mark.parametrize("dh_name, urdf_name, atol_m, atol_rad", [
    # Kinova's published origins are rounded (rpy 1.5708, 3.1416; 0.15643 + 0.12838 m
    # against the user guide's 0.2848 m): within 0.5 mm and 3e-5 rad of the DH table.
    ("gen3", "gen3_urdf", 5e-4, 3e-5),
    # ur_description writes pi/2 as 1.570796327 (error 2e-10 rad).
    ("ur5e", "ur5e_urdf", 1e-9, 1e-9),
    ("panda", "panda.urdf", 1e-12, 1e-12),
])
def test_urdf_and_dh_descriptions_give_the_same_fk(dh_name, urdf_name, atol_m, atol_rad):
    """The whole tool frame agrees (the fixed transform between the DH flange and the
    URDF tip is the identity for these three arms), and so do the Jacobians."""
    dh = load_robot(dh_name)
    urdf = load_robot(urdf_name if "." not in urdf_name else str(CONFIG / urdf_name))
    assert urdf.dh is None and dh.dh is not None
    assert urdf.joint_names == dh.joint_names
    assert urdf.tool_offset == dh.tool_offset
    q = dh.sample(np.random.default_rng(7), 500)
    a, b = dh.fk(q), urdf.fk(q)
    np.testing.assert_allclose(b[:, :3, 3], a[:, :3, 3], rtol=0, atol=atol_m)
    np.testing.assert_allclose(b[:, :3, :3], a[:, :3, :3], rtol=0, atol=atol_rad)
    np.testing.assert_allclose(urdf.jacobian(q, kind="pose"), dh.jacobian(q, kind="pose"),
                               rtol=0, atol=atol_m + atol_rad)


def test_gen3_urdf_keeps_the_yaml_model_settings():
    dh, urdf = load_robot("gen3"), load_robot("gen3_urdf")
    np.testing.assert_array_equal(urdf.continuous, dh.continuous)
    np.testing.assert_array_equal(urdf.lower, dh.lower)
    np.testing.assert_array_equal(urdf.upper, dh.upper)
    np.testing.assert_allclose(urdf.velocity_limits, dh.velocity_limits, atol=5e-4)
    assert urdf.link_names == dh.link_names
    assert dict(urdf.task_defaults) == dict(dh.task_defaults)
    assert dict(urdf.safety) == dict(dh.safety)


def test_from_urdf_defaults_and_rules():
    """Bare URDF: base = root, tip = the one leaf, no tool, home 0 or mid-range, name."""
    panda = load_robot(str(CONFIG / "panda.urdf"))
    assert panda.name == "panda" and panda.source == str(CONFIG / "panda.urdf")
    assert panda.link_names[0] == "panda_link0" and panda.link_names[-1] == "panda_link8"
    # joint 4's range [-3.0718, -0.0698] excludes 0: its middle
    np.testing.assert_allclose(panda.home, [0, 0, 0, (-3.0718 - 0.0698) / 2, 0, 0, 0])
    named = Robot.from_urdf(SYNTHETIC, tip_link="tip", tool_offset=0.1, name="mine")
    assert named.name == "mine" and named.tool_offset == 0.1
    assert named.joint_types == ("continuous", "revolute", "prismatic", "revolute")
    assert named.units == ("rad", "rad", "m", "rad")
    np.testing.assert_allclose(named.lower[1:], [-2.0, -0.1, -3.0])
    np.testing.assert_allclose(named.velocity_limits, [2.0, 1.0, 0.4, 0.5])
    flange = dataclasses.replace(named, tool_offset=0.0).fk(named.home)
    np.testing.assert_allclose(named.position(named.home), flange[:3, 3] + 0.1 * flange[:3, 2],
                               atol=1e-15)
    # A tip that is the last moving link gets a distinct flange name.
    wrist = Robot.from_urdf(CASES["scara"][0], tip_link="wrist")
    assert wrist.link_names[-2:] == ("wrist", "wrist_flange")


def test_bare_urdf_position_tasks_start_bent_when_home_is_singular():
    from uvs_core.tasks import make_task

    scara = load_robot("scara")      # only scara.urdf: the bare-URDF defaults
    np.testing.assert_array_equal(scara.home, np.zeros(4))   # elbow straight: singular
    start = [0.0, 0.5, 0.0, 0.0]     # the paper's bend on the 2nd revolute joint
    assert dict(scara.task_defaults) == {"single_point": {"home": start},
                                         "multi_point": {"home": start},
                                         "pose": {"home": start}}
    task = make_task("single_point", scara)
    np.testing.assert_array_equal(task.q_fixed, start)
    assert np.linalg.svd(task.jacobian(task.q_fixed), compute_uv=False)[2] > 0.05
    # The Gen3 URDF without its YAML gets the paper's start pose by this rule.
    gen3 = load_robot(str(CONFIG / "gen3.urdf"))
    assert gen3.task_defaults["single_point"]["home"] == [0.0, 0.5, 0.0, -0.5, 0.0, 0.5, 0.0]


def _write(tmp_path, text: str, name: str = "bad.urdf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _robot_xml(*joints: str, links=("a", "b", "c")) -> str:
    body = "".join(f'<link name="{name}"/>' for name in links)
    return f'<robot name="bad">{body}{"".join(joints)}</robot>'


def _joint(name, kind, parent, child,
           extra='<limit lower="-1" upper="1" velocity="1" effort="1"/>'):
    return (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/>'
            f'<child link="{child}"/><axis xyz="0 0 1"/>{extra}</joint>')


GOOD_TWO = _robot_xml(_joint("j1", "revolute", "a", "b"), _joint("j2", "revolute", "b", "c"))


@pytest.mark.parametrize("xml, kwargs, reason", [
    ("<robot", {}, "not well-formed XML"),
    ("<robot/>", {}, "invalid URDF"),
    (GOOD_TWO, {"tip_link": "nope"}, "tip_link 'nope' is not a link"),
    (GOOD_TWO, {"base_link": "nope"}, "base_link 'nope' is not a link"),
    (GOOD_TWO, {"base_link": "c", "tip_link": "a"}, "is not below base_link"),
    (_robot_xml(_joint("j1", "revolute", "a", "b"), _joint("j2", "revolute", "c", "b")), {},
     "child of two joints"),
    (_robot_xml(_joint("j1", "revolute", "a", "b"), _joint("j2", "revolute", "b", "a"),
                links=("a", "b")), {}, "roots: none, a loop"),
    (_robot_xml(_joint("j1", "floating", "a", "b"), _joint("j2", "revolute", "b", "c")), {},
     "type floating is not supported"),
    (_robot_xml(_joint("j1", "revolute", "a", "b"), _joint("j2", "planar", "b", "c")), {},
     "type planar is not supported"),
    (_robot_xml(_joint("j1", "revolute", "a", "b"), _joint("j2", "revolute", "a", "c")), {},
     "several leaf links"),
    (_robot_xml(_joint("j1", "revolute", "a", "b", ""), links=("a", "b")), {},
     "needs <limit velocity>"),
    (_robot_xml(_joint("j1", "prismatic", "a", "b", '<limit velocity="1" effort="1"/>'),
                links=("a", "b")), {}, r"prismatic needs <limit lower upper> \(m\)"),
    (_robot_xml(_joint("j1", "fixed", "a", "b", ""), links=("a", "b")), {}, "no revolute"),
    (_robot_xml(_joint("j1", "revolute", "a", "zz")), {}, "child link 'zz' is not a link"),
])
def test_bad_urdf_is_a_one_line_value_error(tmp_path, xml, kwargs, reason):
    with pytest.raises(ValueError, match=reason) as info:
        Robot.from_urdf(xml, **kwargs)
    assert "\n" not in str(info.value)
    if not kwargs:   # through load_robot: the file is named
        path = _write(tmp_path, xml)
        with pytest.raises(ValueError, match=reason) as info:
            load_robot(str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_robot(str(tmp_path / "absent.urdf"))
    yaml_path = _write(tmp_path, "urdf: absent.urdf\n", "arm.yaml")
    with pytest.raises(ValueError, match=r"absent.urdf: cannot read") as info:
        load_robot(str(yaml_path))
    assert str(yaml_path) in str(info.value)
    both = _write(tmp_path, "urdf: x.urdf\ndh: []\n", "both.yaml")
    with pytest.raises(ValueError, match="takes its joints and links from it; remove dh"):
        load_robot(str(both))


def test_yaml_referencing_a_urdf_relative_to_itself(tmp_path):
    _write(tmp_path, GOOD_TWO, "two.urdf")
    path = _write(tmp_path, "urdf: two.urdf\ntip_link: c\ntool_offset: 0.05\nhome: [0.1, 0.2]\n"
                  "tasks: {multi_point: {scale: 0.2}}\n", "two.yaml")
    robot = load_robot(str(path))
    assert robot.name == "two" and robot.source == str(path)   # name: the YAML file's
    np.testing.assert_array_equal(robot.home, [0.1, 0.2])
    assert dict(robot.task_defaults) == {"multi_point": {"scale": 0.2}}
    assert robot.tool_offset == 0.05


def test_parse_urdf_reports_the_chain():
    arm = parse_urdf(SYNTHETIC, tip_link="tip")
    assert arm.joint_names == ("j1", "j2", "slide", "j4")
    assert arm.link_names == ("world", "a", "b", "c", "d", "tip")
    np.testing.assert_allclose(np.linalg.norm(arm.chain.axes, axis=1), 1.0)
    np.testing.assert_array_equal(arm.chain.prismatic, [False, False, True, False])


# ---------------------------------------------------------------------- prismatic joints

@pytest.fixture(scope="module")
def scara() -> Robot:
    return load_robot("scara")


def test_prismatic_column_is_its_axis_and_no_rotation(scara, central_difference):
    rng = np.random.default_rng(3)
    for q in scara.sample(rng, 5):
        jac = scara.jacobian(q, kind="pose")
        np.testing.assert_allclose(jac[:3, 2], [0.0, 0.0, -1.0], atol=1e-15)   # m/m, down
        np.testing.assert_array_equal(jac[3:, 2], 0.0)
        np.testing.assert_allclose(jac[:3], central_difference(scara.position, q), atol=1e-8)
        lowered = q.copy()
        lowered[2] += 0.1                                    # 0.1 m down the quill
        np.testing.assert_allclose(scara.position(lowered) - scara.position(q),
                                   [0.0, 0.0, -0.1], atol=1e-15)


def test_sim_keeps_prismatic_limits_in_m_and_m_per_s(scara):
    from uvs_core.sim import Simulation
    from uvs_core.tasks import make_task

    task = make_task("single_point", scara)
    sim = Simulation(task, dt=0.05, batch=1, velocity_limits=1.22, velocity_mode="clip")
    np.testing.assert_allclose(sim.velocity_limits, [1.22, 1.22, 0.3, 1.22])  # quill: 0.3 m/s
    result = sim.step(np.array([0.0, 0.0, 5.0, 0.0]))
    assert result.qdot[0, 2] == pytest.approx(0.3) and result.q[0, 2] == pytest.approx(0.015)
    for _ in range(30):                                      # 30 x 0.015 m > 0.3 m stroke
        result = sim.step(np.array([0.0, 0.0, 5.0, 0.0]))
    assert result.q[0, 2] == pytest.approx(0.3) and result.clipped[0, 2]
    np.testing.assert_allclose(result.x[0], scara.position(result.q[0]))


def test_true_jacobian_servo_reaches_targets_with_the_prismatic_joint(scara):
    """Targets at other heights need the quill: the true Jacobian servoes there (goals
    with the elbow bent the start's way, so no path crosses the straight-arm singularity)."""
    from uvs_core.control import ControlConfig, control_step
    from uvs_core.sim import Simulation
    from uvs_core.tasks import make_task

    task = make_task("single_point", scara)
    rng = np.random.default_rng(11)
    goals = np.column_stack([rng.uniform(-1.0, 1.0, 8), rng.uniform(0.3, 1.5, 8),
                             rng.uniform(0.02, 0.28, 8), np.zeros(8)])
    targets = scara.position(goals)
    sim = Simulation(task, dt=0.05, batch=len(targets))
    x = sim.reset()
    config = ControlConfig.for_task(task)
    for _ in range(400):
        qdot = np.stack([control_step(task.jacobian(qa), xi, t, qa, config)[0]
                         for qa, xi, t in zip(sim.qa, x, targets)])
        x = sim.step(qdot).x
    assert np.ptp(targets[:, 2]) > 0.1                  # the targets differ in height
    np.testing.assert_allclose(x, targets, atol=2e-3)


def test_llknn_estimates_the_prismatic_jacobian_from_babbling(scara):
    """A learned estimator is generic in q: fitted on OU babbling of the SCARA it gives
    the quill's column (0, 0, -1) m/m and the true Jacobian to a few per cent."""
    from uvs_core.babble import babble
    from uvs_core.estimators import make_estimator
    from uvs_core.tasks import make_task

    task = make_task("single_point", scara)
    data = babble(task, 6000, seed=5)
    est = make_estimator("llknn", task)
    est.fit(task.select(data.q), data.x, data.traj)
    qa = task.q_fixed + np.array([0.1, -0.1, 0.05, 0.2])
    got, want = est.estimate(qa, task.x(qa)), task.jacobian(qa)
    np.testing.assert_allclose(got[:, 2], [0.0, 0.0, -1.0], atol=0.05)
    assert np.linalg.norm(got - want) < 0.1 * np.linalg.norm(want)
