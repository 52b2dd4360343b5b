"""Node ``jacobian_estimator``: serves Jacobian estimates of the configured task.

Services (relative names, so a namespace applies):
- ``estimate_jacobian`` (uvs_interfaces/srv/EstimateJacobian): J at
  ``joint_positions`` (n robot joints in /joint_states order, or the task's k
  active joints), row-major (m, k), with its condition number, its uncertainty
  (nk_ens; NaN for estimators without one) and the name of the estimator that
  answered. Given ``task_position`` (m,), an online
  estimator (Broyden) is updated with (q, x) first. A request that cannot be
  answered gets success=false and a message saying what was expected.
- ``~/reset`` (std_srvs/Trigger): reset the current estimator (call at the
  start of each new target or trajectory; Broyden returns to its initial J).

Parameters:
- ``estimator`` (string, one of the registered estimators, default ``tj``):
  swappable at run time (``ros2 param set /jacobian_estimator estimator
  nk_tanh``). The new estimator is built and its model loaded and checked
  first; an unknown name or a missing, corrupt or mismatched model is
  rejected with the reason and the current estimator keeps serving. Setting
  the current name again reloads it (a retrained model, a fresh Broyden).
- ``task``, ``robot`` (read-only): what is estimated; ``robot`` as every node's
  (uvs_ros.robot_model: ``robot_description`` reads the URDF a robot driver
  publishes, with ``base_link``, ``tip_link``, ``robot_description_timeout``).
- ``model_dir``: root of the models, ``<model_dir>/<task>/<name>`` (the Gen3's)
  and ``<model_dir>/<robot>/<task>/<name>`` (another robot model's); by default
  the ``models/`` installed with uvs_bringup (else the repository's); empty
  means that default.
- ``models.<name>`` for each learned estimator: its model directory; empty
  means ``<model_dir>/<robot>/<task>/<name>`` where that exists, else
  ``<model_dir>/<task>/<name>``. A model made for another robot (its metadata's
  ``robot``) is refused with the reason. When the default holds no model for
  this robot, llknn and broyden (LL-KNN's model, the babbling itself, is too
  large to ship) are made on first use from the paper protocol's babbling,
  seed 0, into ``$UVS_CACHE/models/<robot>/<task>/<name>`` (default cache
  ``~/.cache/uvs``), logging progress, and loaded from there afterwards
  (uvs_core.estimators.cache).
- ``broyden.alpha`` (0..2, default 0: by task) and ``broyden.min_motion`` (rad):
  Broyden's update weight and smallest joint step, applied whenever Broyden is
  built; setting one while Broyden serves rebuilds it (a fresh Broyden from its first
  J). ``alpha`` 0 means 1.0 (the classic update) where x is the arm's kinematics and
  0.2 for ``visual_servo``, whose x is a tracked marker: the tracker's pixel error
  made the classic update wreck J near the target (docs/parity.md, item 9).

Parameters that belong together (``estimator`` with ``models.<name>`` and
``model_dir``) are validated and applied as one when given in one call: ``ros2
param load /jacobian_estimator file.yaml``, a ``--params-file`` at start, or
``set_parameters_atomically``. ``ros2 param set`` sets one at a time; then a
refused ``models.<name>`` (a missing or mismatched model) is remembered as the
model asked for, and selecting ``estimator <name>`` next tries that model again
rather than silently serving the default one: it serves it (and
``models.<name>`` then reads its path) or is refused with the reason.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Mapping
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_services_default
from std_srvs.srv import Trigger

from uvs_core.estimators import estimator_names, estimator_specs
from uvs_core.estimators.cache import FIRST_USE
from uvs_core.estimators.classical import Broyden
from uvs_core.paths import installed_dir
from uvs_core.tasks import TASK_NAMES, make_task
from uvs_estimation.jacobian_service import (
    EstimatorSetupError,
    JacobianService,
    ModelConfig,
    build_estimator,
)
from uvs_interfaces.srv import EstimateJacobian
from uvs_ros import run_node
from uvs_ros.params import Param, ParamSpec
from uvs_ros.robot_model import load_node_robot, robot_model_params, robot_model_reason

__all__ = ["DEFAULT_ESTIMATOR", "NODE_NAME", "JacobianEstimatorNode", "estimator_spec", "main"]

NODE_NAME = "jacobian_estimator"
DEFAULT_ESTIMATOR = "tj"
#: Broyden's update weight for a tracked x (camera tasks), measured: the live tracker's
#: pixel error (0.06 px) makes the classic update (1) wreck J near the target
#: (docs/parity.md, item 9; benchmarks/parity.py --pixel-std)
TRACKED_BROYDEN_ALPHA = 0.2


def _learned_names() -> tuple[str, ...]:
    """Registered estimators that are served from a trained model (their specs
    say so; nothing is imported, so serving tj never imports torch)."""
    return tuple(name for name, spec in estimator_specs().items() if spec.learned)


def estimator_spec(learned: tuple[str, ...] | None = None,
                   model_dir: str | None = None) -> ParamSpec:
    """The node's parameters (uvs_ros.params): ``models.<name>`` for each of ``learned``
    (default: every learned estimator registered), ``model_dir`` defaulting to
    ``model_dir`` (default: installed_dir("models")). config/jacobian_estimator.yaml is
    checked against it. The estimator's name is checked by building it (the registry's
    message names the known ones), not here."""
    learned = _learned_names() if learned is None else learned
    model_dir = str(installed_dir("models")) if model_dir is None else model_dir
    params = {
        "estimator": Param(
            DEFAULT_ESTIMATOR, "Jacobian estimator serving requests; set at run time to "
            "swap (the new one is built and its model checked first)",
            constraints=f"one of: {', '.join(estimator_names())}"),
        "task": Param("single_point", "servoing task whose Jacobian is estimated",
                      read_only=True, choices=TASK_NAMES),
        **robot_model_params("the Jacobians served; a model made for another robot is refused"),
        "model_dir": Param(
            model_dir, "root of the trained models, laid out <model_dir>/<task>/<estimator> "
            "(the Gen3's) and <model_dir>/<robot>/<task>/<estimator>; empty: the models/ "
            "installed with uvs_bringup (else the repository's)"),
    }
    params["broyden.alpha"] = Param(
        0.0, "Broyden's update weight: 1 is the classic secant update, which trusts each "
        "new (q, x) pair fully; less damps a noisy x. 0: by task, 1.0 where x is the arm's "
        f"kinematics, {TRACKED_BROYDEN_ALPHA} for a camera task, whose x is a tracked marker "
        "(docs/parity.md, item 9)", range=(0.0, 2.0))
    params["broyden.min_motion"] = Param(
        1e-6, "rad: Broyden skips an update whose joint step is shorter (the motion adds "
        "up into the next one)", range=(0.0, 1.0))
    for name in learned:
        params[f"models.{name}"] = Param(
            "", f"model directory of estimator '{name}'; empty: <model_dir>/[<robot>/]"
            f"<task>/{name}" + (", else made on first use into $UVS_CACHE (~/.cache/uvs)"
                                f"/models/<robot>/<task>/{name}" if name in FIRST_USE else ""))
    return ParamSpec(params, checks=(robot_model_reason,))


def broyden_options(values: Mapping[str, Any], task) -> dict[str, float]:
    """Broyden's alpha and min_motion from the node's parameter values (`broyden.*`);
    alpha 0 resolves by task: TRACKED_BROYDEN_ALPHA where x is measured in pixels."""
    alpha = float(values["broyden.alpha"])
    if alpha <= 0.0:
        alpha = TRACKED_BROYDEN_ALPHA if task.units == "px" else 1.0
    return {"alpha": alpha, "min_motion": float(values["broyden.min_motion"])}


class JacobianEstimatorNode(Node):
    """The Jacobian estimator service; see the module docstring.

    Constructible in-process: ``JacobianEstimatorNode(context=ctx,
    parameter_overrides=[Parameter("estimator", value="broyden")])``; every
    keyword goes to :class:`rclpy.node.Node`. Raises EstimatorSetupError (or
    ValueError for a bad task/robot) when the configured estimator cannot be
    built, after destroying itself.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._setup()
        except BaseException:
            self.destroy_node()
            raise

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        self._learned = _learned_names()
        self._default_model_dir = installed_dir("models")
        self._spec = estimator_spec(self._learned, str(self._default_model_dir))
        values = self._spec.declare(self)
        robot = load_node_robot(self, values["robot"])
        self._task = make_task(values["task"], robot)

        self._models = ModelConfig(
            model_dir=self._model_dir_from(values["model_dir"]),
            models={name: values[f"models.{name}"] for name in self._learned},
        )
        self._broyden = broyden_options(values, self._task)
        name = values["estimator"]
        estimator, path = self._build(name, self._models)
        self._service = JacobianService(self._task, name, estimator)
        # Parameter changes may come from the parameter services (default
        # group) and from in-process callers at once; each is validated and
        # committed as a whole.
        self._param_lock = threading.Lock()
        # name -> (path, reason): a models.<name> refused, the model last asked for.
        self._refused_models: dict[str, tuple[str, str]] = {}
        self._adopt: dict[str, str] = {}   # models.<name> values to set after a commit
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        # One exclusive group: estimate and reset never interleave (an online
        # estimator's state is one sequence), while parameter changes, in the
        # default group, build a new estimator concurrently on a
        # MultiThreadedExecutor and swap it in between two requests.
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._estimate_srv = self.create_service(
            EstimateJacobian, "estimate_jacobian", self._on_estimate,
            qos_profile=qos_profile_services_default, callback_group=self._service_group)
        self._reset_srv = self.create_service(
            Trigger, "~/reset", self._on_reset,
            qos_profile=qos_profile_services_default, callback_group=self._service_group)
        self.get_logger().info(
            f"serving {self.resolve_service_name('estimate_jacobian')}: estimator '{name}'"
            + (f" from {path}" if path else "")
            + f", task '{self._task.name}' (m={self._task.m}, k={self._task.k}) "
            f"on robot '{robot.name}'"
        )

    def _build(self, name: str, config: ModelConfig, broyden: dict | None = None):
        """build_estimator, logging the making of a model made on first use (llknn), with
        `broyden` (default: the node's broyden.* values) for Broyden."""
        logger = self.get_logger()
        reported = {"quarter": -1}

        def progress(done: int, total: int) -> None:
            quarter = 4 * done // max(total, 1)
            if quarter > reported["quarter"]:
                reported["quarter"] = quarter
                logger.info(f"babbling for '{name}': {done:,}/{total:,} samples")

        estimator, path = build_estimator(name, self._task, config, log=logger.info,
                                          progress=progress)
        if isinstance(estimator, Broyden):
            try:
                estimator = estimator.with_params(**(broyden or self._broyden))
            except ValueError as exc:
                raise EstimatorSetupError(f"estimator {name!r}: {exc}") from None
        return estimator, path

    def _model_dir_from(self, value: str):
        return value.strip() or self._default_model_dir

    # ------------------------------------------------------------ properties
    @property
    def task(self):
        """The Task served (read-only)."""
        return self._task

    @property
    def estimator_name(self) -> str:
        """Name of the estimator answering requests now."""
        return self._service.name

    # ------------------------------------------------------------- callbacks
    def _on_set_parameters(self, params) -> SetParametersResult:
        with self._param_lock:
            return self._apply_parameters(params)

    def _apply_parameters(self, params) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        current = {n: self.get_parameter(n).value for n in self._spec.params}
        reason = self._spec.reason({**current, **{n: v for n, v in values.items()
                                                  if n in self._spec}})
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        name = values.get("estimator", self._service.name)
        model_dir = self._models.model_dir
        if "model_dir" in values:
            model_dir = self._model_dir_from(values["model_dir"])
        changed_models = {
            key.removeprefix("models."): value
            for key, value in values.items() if key.startswith("models.")
        }
        # `estimator <name>` alone after `models.<name>` was refused: the model asked for
        # is that one, not the default (issue 12); try it again.
        asked = None
        if ("estimator" in values and name in self._refused_models
                and name not in changed_models):
            asked = self._refused_models[name][0]
            changed_models[name] = asked
        config = self._models.with_changes(model_dir=model_dir, models=changed_models)
        task_name = self._task.name

        # Validate by building: the serving estimator is rebuilt when it was
        # named or its model path moved; other explicitly set model paths are
        # loaded once to check them, then dropped.
        robot_name = self._task.robot.name
        current_path = self._models.model_path(name, task_name, robot_name)
        broyden = broyden_options({**current, **values}, self._task)
        rebuild = "estimator" in values or (
            name in self._learned
            and config.model_path(name, task_name, robot_name) != current_path) or (
            broyden != self._broyden and isinstance(self._service.estimator, Broyden))
        candidate = None
        try:
            if rebuild:
                candidate = self._build(name, config, broyden)
            for other, value in changed_models.items():
                if other != name and str(value).strip():
                    self._build(other, config)
        except EstimatorSetupError as exc:
            reason = f"rejected, '{self._service.name}' keeps serving: {exc}"
            if asked is not None:
                reason += (f" (models.{name} = {asked!r}, asked for before and refused; "
                           f"set models.{name} again, '' for the default model, or both "
                           "in one call)")
            for other, value in changed_models.items():
                if other != name or asked is None:
                    self._refused_models[other] = (value, str(exc))
            self.get_logger().warning(reason)
            return SetParametersResult(successful=False, reason=reason)

        for other in changed_models:
            self._refused_models.pop(other, None)
        if asked is not None:
            self._adopt[name] = asked
        self._models = config
        self._broyden = broyden
        if candidate is not None:
            estimator, path = candidate
            old = self._service.swap(name, estimator)
            self.get_logger().info(
                f"estimator '{old}' -> '{name}'" + (f" (model {path})" if path else ""))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        """Make models.<name> read the model adopted from a refused request."""
        adopt, self._adopt = self._adopt, {}
        if adopt:
            self.set_parameters([Parameter(f"models.{name}", value=path)
                                 for name, path in adopt.items()])

    def _on_estimate(self, request, response):
        try:
            answer = self._service.estimate(request.joint_positions, request.task_position)
        # A service must always answer: an exception escaping here would end
        # the executor's spin and leave every client waiting for its deadline.
        # JacobianService already turns request and estimator errors into
        # answers; this is the boundary for a bug in a plug-in estimator.
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(
                f"estimator '{self._service.name}' raised {type(exc).__name__}: {exc}")
            response.success = False
            response.message = f"internal error in estimator '{self._service.name}': " \
                f"{type(exc).__name__}: {exc}"
            response.estimator = self._service.name
            return response
        response.success = answer.success
        response.message = answer.message
        response.estimator = answer.estimator
        response.rows = answer.rows
        response.cols = answer.cols
        if answer.jacobian is not None:
            # array('d') is stored as is; a list would be checked element by element.
            response.jacobian = array.array("d", answer.jacobian.tobytes())
        response.condition_number = answer.condition_number
        response.uncertainty = answer.uncertainty
        return response

    def _on_reset(self, request, response):
        name = self._service.reset()
        response.success = True
        response.message = f"estimator '{name}' reset"
        return response


def main(args=None) -> int:
    # Single-threaded: the lowest service round trip (see benchmarks/); a parameter swap
    # then waits for the request in progress. Bad parameters (value, type) or an
    # estimator that cannot be served: one FATAL line with the reason, exit code 1.
    return run_node(JacobianEstimatorNode, NODE_NAME, args=args,
                    fatal=(ValueError, ParameterException, EstimatorSetupError))


if __name__ == "__main__":
    raise SystemExit(main())
