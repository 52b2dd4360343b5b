"""uvs_ros.params: a spec's descriptors, its validation (offline and on a real rclpy
node, at start and on set) and its check of a parameter file."""

from __future__ import annotations

import math

import pytest

from uvs_ros.params import Param, ParameterType, ParamSpec, non_empty, positive


def _rate_below_cap(values: dict) -> str | None:
    if values["rate"] > values["cap"]:
        return f"rate {values['rate']:g} above cap {values['cap']:g}"
    return None


SPEC = ParamSpec({
    "mode": Param("fast", "How to go.", read_only=True, choices=("fast", "slow")),
    "rate": Param(20.0, "Rate, Hz.", range=(0.0, 100.0), checks=(positive,)),
    "cap": Param(50.0, "Highest rate, Hz.", constraints=">= rate"),
    "count": Param(3, "How many.", range=(1, 10)),
    "name": Param("arm", "A name.", checks=(non_empty,)),
    "flag": Param(False, "A switch."),
    "colour": Param([40, 40, 220], "B, G, R."),
    "point": Param([0.1, 0.2, 0.3], "x, y, z, m."),
    "topics": Param(["/a"], "Topics."),
}, checks=(_rate_below_cap,))


def test_the_type_of_each_parameter_comes_from_its_default():
    types = {name: param.param_type for name, param in SPEC.params.items()}
    assert types == {
        "mode": ParameterType.PARAMETER_STRING, "rate": ParameterType.PARAMETER_DOUBLE,
        "cap": ParameterType.PARAMETER_DOUBLE, "count": ParameterType.PARAMETER_INTEGER,
        "name": ParameterType.PARAMETER_STRING, "flag": ParameterType.PARAMETER_BOOL,
        "colour": ParameterType.PARAMETER_INTEGER_ARRAY,
        "point": ParameterType.PARAMETER_DOUBLE_ARRAY,
        "topics": ParameterType.PARAMETER_STRING_ARRAY}


def test_the_constants_are_rcl_interfaces_own():
    from rcl_interfaces.msg import ParameterType as Msg

    for name in ("BOOL", "INTEGER", "DOUBLE", "STRING", "BOOL_ARRAY", "INTEGER_ARRAY",
                 "DOUBLE_ARRAY", "STRING_ARRAY"):
        assert getattr(ParameterType, f"PARAMETER_{name}") == getattr(Msg, f"PARAMETER_{name}")


def test_descriptors_carry_range_read_only_and_choices():
    mode = SPEC.params["mode"].descriptor()
    assert mode.read_only and mode.type == ParameterType.PARAMETER_STRING
    assert mode.description == "How to go. One of: fast, slow."
    assert mode.additional_constraints == "one of fast, slow"
    rate = SPEC.params["rate"].descriptor()
    assert not rate.read_only and not rate.integer_range
    assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value,
            rate.floating_point_range[0].step) == (0.0, 100.0, 0.0)
    count = SPEC.params["count"].descriptor()
    assert (count.integer_range[0].from_value, count.integer_range[0].to_value) == (1, 10)
    assert not count.floating_point_range
    assert SPEC.params["cap"].descriptor().additional_constraints == ">= rate"


@pytest.mark.parametrize("change, reason", [
    ({}, None),
    ({"mode": "warp"}, "mode 'warp' unknown; choose one of fast, slow"),
    ({"rate": 20}, "rate must be a double, got 20 (int)"),
    ({"rate": -1.0}, "rate must be a finite number > 0, got -1.0"),
    ({"rate": math.inf}, "rate must be a finite number > 0, got inf"),
    ({"rate": 200.0}, "rate must be in [0, 100], got 200.0"),
    ({"count": 0}, "count must be in [1, 10], got 0"),
    ({"count": True}, "count must be an integer, got True (bool)"),
    ({"name": "  "}, "name must not be empty"),
    ({"colour": [1, 2.5, 3]}, "colour must be an integer array, got [1, 2.5, 3] (list)"),
    ({"rate": 60.0}, "rate 60 above cap 50"),          # the cross check
    ({"rate": -1.0, "mode": "warp"}, "mode 'warp' unknown; choose one of fast, slow"),
])
def test_reason_names_the_first_bad_parameter_then_the_cross_checks(change, reason):
    assert SPEC.reason({**SPEC.defaults(), **change}) == reason


def test_arrays_from_rclpy_are_accepted():
    import array

    values = {**SPEC.defaults(), "colour": array.array("q", [1, 2, 3]),
              "point": array.array("d", [1.0, 2.0, 3.0])}
    assert SPEC.reason(values) is None


# ---------------------------------------------------------------- on a real rclpy node

@pytest.fixture
def context():
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _node(context, **overrides):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    return Node("spec_test", context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])


def test_declare_gives_the_values_and_the_descriptors(context):
    node = _node(context, rate=30.0, colour=[1, 2, 3])
    try:
        values = SPEC.declare(node)
        assert values["rate"] == 30.0 and values["mode"] == "fast"
        assert list(values["colour"]) == [1, 2, 3]
        described = node.describe_parameter("rate")
        assert described.floating_point_range[0].to_value == 100.0
        assert node.describe_parameter("mode").read_only
    finally:
        node.destroy_node()


@pytest.mark.parametrize("overrides, message", [
    ({"rate": 60.0}, "spec_test: rate 60 above cap 50"),
    ({"name": ""}, "spec_test: name must not be empty"),
    ({"rate": 500.0}, "spec_test: rate: "),        # rclpy's range check, on one line
    ({"count": "three"}, "spec_test: count: "),     # rclpy's type check, on one line
])
def test_a_bad_start_value_is_one_line_value_error(context, overrides, message):
    node = _node(context, **overrides)
    try:
        with pytest.raises(ValueError) as err:
            SPEC.declare(node)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    finally:
        node.destroy_node()


def test_watch_refuses_with_the_reason_and_applies_what_passes(context):
    from rclpy.parameter import Parameter

    node = _node(context)
    applied: list[set[str]] = []
    try:
        values = SPEC.declare(node)
        SPEC.watch(node, values, applied.append)
        result = node.set_parameters([Parameter("rate", value=60.0)])[0]
        assert not result.successful and result.reason == "rate 60 above cap 50"
        assert values["rate"] == 20.0 and applied == []
        # Both in one call: validated together, so raising the cap first is not needed.
        result = node.set_parameters_atomically([Parameter("rate", value=60.0),
                                                 Parameter("cap", value=80.0)])
        assert result.successful
        assert (values["rate"], values["cap"]) == (60.0, 80.0) and applied == [{"rate", "cap"}]
        result = node.set_parameters([Parameter("mode", value="slow")])[0]
        assert not result.successful and "read-only" in result.reason
    finally:
        node.destroy_node()


# ---------------------------------------------------------------- parameter files

def test_yaml_problems_and_differences(tmp_path):
    path = tmp_path / "n.yaml"
    path.write_text("n:\n  ros__parameters:\n    rate: 30.0\n    count: 3\n"
                    "    colour: [40, 40, 220]\n    bogus: 1\n    cap: 50\n"
                    "    name: ''\n")
    problems, differences = SPEC.yaml_problems(path, "n")
    assert problems == [
        f"{path}: n: bogus: not a parameter of the node",
        f"{path}: n: cap: 50 is an integer; write 50.0 (rclpy refuses an integer for a "
        "double)",
        f"{path}: n: name must not be empty"]
    assert differences == {"rate": (30.0, 20.0)}
    path.write_text("n:\n  ros__parameters:\n    rate: 60.0\n")
    assert SPEC.yaml_problems(path, "n")[0] == [f"{path}: n: rate 60 above cap 50"]
    assert SPEC.yaml_problems(path, "other")[0] == [
        f"{path}: no other: ros__parameters: section"]


def test_nested_yaml_keys_are_dotted_names(tmp_path):
    spec = ParamSpec({"models.a": Param("", "a model"), "models.b": Param("", "b model")})
    path = tmp_path / "m.yaml"
    path.write_text("m:\n  ros__parameters:\n    models:\n      a: x\n      c: y\n")
    problems, differences = spec.yaml_problems(path, "m")
    assert problems == [f"{path}: m: models.c: not a parameter of the node"]
    assert differences == {"models.a": ("x", "")}
