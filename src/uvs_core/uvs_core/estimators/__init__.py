"""Jacobian estimators: registry, construction and loading.

The registry maps a name to a ``"module:Class"`` string that is imported
only when that estimator is built, so importing ``uvs_core`` never imports
torch; the neural estimators live in ``uvs_learning``. Adding an estimator
means one module with an :class:`Estimator` subclass and one entry here (or
a call to :func:`register_estimator` from a plugin).

>>> est = make_estimator("llknn", task, neighbors=64)
>>> est.fit(qa, x, traj)
>>> J = est.estimate(qa[0])          # (m, k)
>>> est.save("models/llknn_single_point")
>>> est = load_estimator("models/llknn_single_point", task)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from uvs_core.estimators.base import (
    Estimator,
    ModelError,
    NotFittedError,
    check_metadata,
    read_metadata,
    split_by_trajectory,
)

__all__ = [
    "ESTIMATOR_NAMES",
    "Estimator",
    "ModelError",
    "NotFittedError",
    "estimator_class",
    "load_estimator",
    "make_estimator",
    "register_estimator",
    "split_by_trajectory",
]

_REGISTRY: dict[str, str] = {
    "tj": "uvs_core.estimators.classical:TrueJacobian",
    "broyden": "uvs_core.estimators.classical:Broyden",
    "llknn": "uvs_core.estimators.classical:LocalLinearKNN",
    "nj": "uvs_learning.neural_jacobian:NeuralJacobian",
    "binj": "uvs_learning.neural_jacobian:BiNeuralJacobian",
    "nk_tanh": "uvs_learning.neural_kinematics:NeuralKinematicsTanh",
    "nk_relu": "uvs_learning.neural_kinematics:NeuralKinematicsReLU",
    # beyond the paper: the nk_tanh prior corrected online (issue 15)
    "nk_adapt": "uvs_learning.nk_adapt:NeuralKinematicsAdapt",
    # beyond the paper: K nk_tanh members, J = mean, with an uncertainty (issue 15)
    "nk_ens": "uvs_learning.nk_ensemble:NeuralKinematicsEnsemble",
}

#: the built-in estimators, in the paper's order of baselines then methods, then ours
ESTIMATOR_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def register_estimator(name: str, target: str) -> None:
    """Register ``name`` -> ``"package.module:Class"`` (a subclass of Estimator)."""
    if ":" not in target:
        raise ValueError(f"estimator target must be 'module:Class', got {target!r}")
    _REGISTRY[name] = target


def estimator_names() -> tuple[str, ...]:
    """All registered names, built-in first."""
    return tuple(_REGISTRY)


def estimator_class(name: str) -> type[Estimator]:
    """The Estimator subclass registered as ``name``.

    ValueError listing the valid names for an unknown name; ImportError with
    a hint when the implementing package (e.g. uvs_learning/torch) is absent.
    """
    try:
        target = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown estimator {name!r}; valid: {', '.join(_REGISTRY)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"estimator {name!r} needs module {module_name!r}, which cannot be imported "
            f"({exc}); the neural estimators need the uvs_learning package and PyTorch"
        ) from exc
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"{target} is not an Estimator subclass")
    return cls


def make_estimator(name: str, task, **params) -> Estimator:
    """A new (unfitted) estimator ``name`` for ``task``; ValueError on an unknown name."""
    return estimator_class(name)(task, **params)


def load_estimator(path, task=None, name: str | None = None) -> Estimator:
    """Load a model directory written by ``Estimator.save`` / ``train_model``.

    path: the model directory. task: the Task it must match (estimator name,
    task, robot, m, k, active joints are checked); when None the task is
    rebuilt from the metadata with the default task configuration.
    name: the estimator the caller expects, checked too.
    Raises ModelError naming the file on a mismatch or a corrupt model.
    """
    path = Path(path)
    meta = read_metadata(path)
    check_metadata(meta, path, name=name)
    try:
        cls = estimator_class(meta["estimator"])
    except ValueError as exc:
        raise ModelError(f"{path / 'metadata.json'}: field 'estimator': {exc}") from None
    if task is None:
        from uvs_core.robot import load_robot
        from uvs_core.tasks import make_task

        try:
            task = make_task(meta["task"], load_robot(meta["robot"]))
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise ModelError(
                f"{path / 'metadata.json'}: cannot rebuild task {meta['task']!r} "
                f"on robot {meta['robot']!r}: {exc}"
            ) from None
    return cls.load(path, task)
