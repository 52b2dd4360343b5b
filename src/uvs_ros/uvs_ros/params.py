"""Parameters declared and validated from one spec per node.

generate_parameter_library's idea in Python: a node lists its parameters once, each a
:class:`Param` (default, description, range, read-only, choices, a check of its own),
plus the cross-field checks of the whole set, in a :class:`ParamSpec`. From it:

- ``spec.declare(node)`` declares every parameter with a descriptor (its type from
  the default, description, range, read_only, the constraints in words), reads the
  values the node was started with and validates them: a bad value raises ValueError
  ``"<node>: <reason>"``, which ``run_node`` logs as one FATAL line (exit code 1);
- ``spec.watch(node, values, apply)`` validates every later change (``ros2 param
  set``, ``ros2 param load``) as a whole before rclpy applies it, so the on-set
  callback answers with the reason, and then updates ``values`` and calls
  ``apply(changed names)``;
- ``spec.reason(values)`` is the same validation without a node (plain pytest);
- ``spec.yaml_problems(path, node_name)`` checks a parameter file (config/<node>.yaml)
  against the spec: every key known, of the default's type and valid.

A spec is plain Python: rclpy and rcl_interfaces are imported only when a node
declares it, so the core of a node (uvs_control.cycle) and its tests need no ROS.

A reason is one line naming the parameter, e.g. ``rate must be a finite number > 0,
got -1.0`` or ``task 'x' unknown; choose one of single_point, ...``.
"""

from __future__ import annotations

import array
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.node import Node

__all__ = ["Check", "CrossCheck", "Param", "ParamSpec", "ParameterType", "finite", "non_empty",
           "non_negative", "positive"]

#: A check of one value: ``(name, value) -> reason or None``.
Check = Callable[[str, Any], "str | None"]
#: A check of a complete set of values: ``values -> reason or None``.
CrossCheck = Callable[[dict], "str | None"]


def positive(name: str, value) -> str | None:
    """A check: ``value`` is a finite number > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        return f"{name} must be a finite number > 0, got {value!r}"
    return None


def non_negative(name: str, value) -> str | None:
    """A check: ``value`` is a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        return f"{name} must be a finite number >= 0, got {value!r}"
    return None


def finite(name: str, value) -> str | None:
    """A check: ``value`` is a finite number."""
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        return f"{name} must be a finite number, got {value!r}"
    return None


def non_empty(name: str, value) -> str | None:
    """A check: ``value`` is a string with something other than blanks."""
    if not str(value).strip():
        return f"{name} must not be empty"
    return None


class ParameterType:
    """rcl_interfaces/msg/ParameterType's constants (fixed by the message definition),
    here so that a spec needs no ROS import."""

    PARAMETER_BOOL = 1
    PARAMETER_INTEGER = 2
    PARAMETER_DOUBLE = 3
    PARAMETER_STRING = 4
    PARAMETER_BOOL_ARRAY = 6
    PARAMETER_INTEGER_ARRAY = 7
    PARAMETER_DOUBLE_ARRAY = 8
    PARAMETER_STRING_ARRAY = 9


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_ARRAY_TYPES = {bool: ParameterType.PARAMETER_BOOL_ARRAY,
                int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                str: ParameterType.PARAMETER_STRING_ARRAY}
_TYPE_NAMES = {ParameterType.PARAMETER_BOOL: "a bool",
               ParameterType.PARAMETER_INTEGER: "an integer",
               ParameterType.PARAMETER_DOUBLE: "a double",
               ParameterType.PARAMETER_STRING: "a string",
               ParameterType.PARAMETER_BOOL_ARRAY: "a bool array",
               ParameterType.PARAMETER_INTEGER_ARRAY: "an integer array",
               ParameterType.PARAMETER_DOUBLE_ARRAY: "a double array",
               ParameterType.PARAMETER_STRING_ARRAY: "a string array"}


def _type_of(value) -> int:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("an empty list default needs an explicit type")
        return _ARRAY_TYPES[type(value[0])]
    return _TYPES[type(value)]


def _matches(type_: int, value) -> bool:
    """Whether ``value`` (as rclpy or a YAML file gives it) is of ParameterType ``type_``."""
    if type_ in _ARRAY_TYPES.values():
        element = next(t for t, a in _ARRAY_TYPES.items() if a == type_)
        # rclpy gives number arrays as array.array, YAML as lists
        return isinstance(value, (list, tuple, array.array)) and all(
            _matches(_TYPES[element], v) for v in value)
    if type_ == ParameterType.PARAMETER_BOOL:
        return isinstance(value, bool)
    if type_ == ParameterType.PARAMETER_INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == ParameterType.PARAMETER_DOUBLE:
        return isinstance(value, float)
    return isinstance(value, str)


@dataclass(frozen=True)
class Param:
    """One parameter of a node.

    default: the value when none is given; its Python type is the parameter's type
        (bool, int, float, str, or a non-empty list of one of them) unless ``type`` says.
    description: what it is, with units.
    read_only: set at start only (``ros2 param set`` refuses it).
    range: ``(low, high)``, inclusive, of a number; rclpy enforces it and the
        descriptor shows it.
    choices: the allowed strings; another is refused with
        ``<name> <value> unknown; choose one of ...``.
    constraints: more constraints in words, for the descriptor (``> 0 and < 1/rate``).
    checks: checks of the value alone (``positive``, ``non_empty``, your own), in order.
    type: the ParameterType when the default cannot say (an empty list).
    """

    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    constraints: str = ""
    checks: tuple[Check, ...] = ()
    type: int | None = None

    @property
    def param_type(self) -> int:
        """The rcl_interfaces ParameterType of the parameter."""
        return self.type if self.type is not None else _type_of(self.default)

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor that ``ros2 param describe`` shows."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        description = self.description
        constraints = self.constraints
        if self.choices:
            description += f" One of: {', '.join(self.choices)}."
            constraints = "; ".join(filter(None, (f"one of {', '.join(self.choices)}",
                                                  constraints)))
        out = ParameterDescriptor(description=description, type=self.param_type,
                                  read_only=self.read_only,
                                  additional_constraints=constraints)
        if self.range is not None:
            low, high = self.range
            if self.param_type == ParameterType.PARAMETER_INTEGER:
                out.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                  step=1)]
            else:
                out.floating_point_range = [FloatingPointRange(
                    from_value=float(low), to_value=float(high), step=0.0)]
        return out

    def reason(self, name: str, value) -> str | None:
        """Why ``value`` is not acceptable for this parameter alone, or None."""
        if not _matches(self.param_type, value):
            return (f"{name} must be {_TYPE_NAMES[self.param_type]}, got {value!r} "
                    f"({type(value).__name__})")
        if self.choices and value not in self.choices:
            return f"{name} {value!r} unknown; choose one of {', '.join(self.choices)}"
        for check in self.checks:
            reason = check(name, value)
            if reason:
                return reason
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{name} must be in [{self.range[0]:g}, {self.range[1]:g}], got {value!r}"
        return None


class ParamSpec:
    """The parameters of one node and the checks of their combination.

    params: name -> Param, in the order they are declared (and documented).
    checks: cross-field checks ``values -> reason or None``, run in order after every
        parameter passed its own checks; ``values`` holds every parameter.
    """

    def __init__(self, params: Mapping[str, Param], checks: Iterable[CrossCheck] = ()):
        self.params: dict[str, Param] = dict(params)
        self.checks: tuple[CrossCheck, ...] = tuple(checks)

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def defaults(self) -> dict:
        """name -> default of every parameter."""
        return {name: param.default for name, param in self.params.items()}

    def reason(self, values: Mapping[str, Any]) -> str | None:
        """Why the complete set ``values`` (name -> value) is not acceptable, or None:
        the first failing parameter in spec order, then the first failing cross check."""
        for name, param in self.params.items():
            reason = param.reason(name, values[name])
            if reason:
                return reason
        full = dict(values)
        for check in self.checks:
            reason = check(full)
            if reason:
                return reason
        return None

    def declare(self, node: Node) -> dict:
        """Declare every parameter on ``node``; return name -> value as started.

        Raises ValueError ``"<node name>: <reason>"`` for a value of the wrong type, out
        of range or failing a check (run_node: one FATAL line, exit code 1).
        """
        from rclpy.exceptions import ParameterException

        for name, param in self.params.items():
            try:
                node.declare_parameter(name, param.default, param.descriptor())
            except ParameterException as exc:
                # rclpy's own refusal (out of range, wrong type) is a multi-line message.
                raise ValueError(f"{node.get_name()}: {name}: "
                                 + " ".join(str(exc).split())) from None
        values = {name: node.get_parameter(name).value for name in self.params}
        reason = self.reason(values)
        if reason:
            raise ValueError(f"{node.get_name()}: {reason}")
        return values

    def watch(self, node: Node, values: dict,
              apply: Callable[[set[str]], None] | None = None,
              lock: threading.Lock | threading.RLock | None = None) -> None:
        """Validate every change of ``node``'s parameters, then keep ``values`` current.

        The on-set callback checks the values as they would be after the change (all
        parameters of one call together) and refuses the whole call with the reason;
        accepted changes are written into ``values`` (under ``lock`` when given) and
        ``apply(changed names)`` is called. Parameters not in the spec pass through.
        """
        from rcl_interfaces.msg import SetParametersResult

        def on_set(params) -> SetParametersResult:
            merged = dict(values)
            merged.update({p.name: p.value for p in params if p.name in self.params})
            reason = self.reason(merged)
            return SetParametersResult(successful=reason is None, reason=reason or "")

        def after_set(params) -> None:
            changed = {p.name: p.value for p in params if p.name in self.params}
            if not changed:
                return
            if lock is None:
                values.update(changed)
            else:
                with lock:
                    values.update(changed)
            if apply is not None:
                apply(set(changed))

        node.add_on_set_parameters_callback(on_set)
        node.add_post_set_parameters_callback(after_set)

    def yaml_problems(self, path: str | Path, node_name: str) -> tuple[list[str], dict]:
        """Check ``node_name``'s section of the parameter file ``path`` against the spec.

        Returns (problems, differences): problems are one-line reasons (a key the spec
        does not know, a value of another type, a value the spec refuses, no section);
        differences is name -> (file value, default) for the keys whose value differs
        from the spec's default (for the caller to require a reason for each).
        Nested keys (``models: {nk_tanh: ...}``) are the dotted names (``models.nk_tanh``).
        """
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        section = data.get(node_name, {})
        if not isinstance(section, dict) or "ros__parameters" not in section:
            return [f"{path}: no {node_name}: ros__parameters: section"], {}
        flat = _flatten(section["ros__parameters"] or {})
        problems, differences = [], {}
        values = self.defaults()
        for name, value in flat.items():
            param = self.params.get(name)
            if param is None:
                problems.append(f"{path}: {node_name}: {name}: not a parameter of the node")
                continue
            if param.param_type == ParameterType.PARAMETER_DOUBLE and isinstance(value, int) \
                    and not isinstance(value, bool):
                problems.append(f"{path}: {node_name}: {name}: {value!r} is an integer; "
                                f"write {float(value)!r} (rclpy refuses an integer for a "
                                "double)")
                continue
            reason = param.reason(name, value)
            if reason:
                problems.append(f"{path}: {node_name}: {reason}")
                continue
            values[name] = value
            if not _same(value, param.default):
                differences[name] = (value, param.default)
        if not problems:
            reason = self.reason(values)
            if reason:
                problems.append(f"{path}: {node_name}: {reason}")
        return problems, differences


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple, array.array)) and isinstance(b, (list, tuple, array.array)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
