"""Jacobian estimators: registry, construction and loading.

The registry is the ``uvs.estimators`` entry point group
(:mod:`uvs_core.estimators.registry`): each entry names a light spec whose
``"module:Class"`` target is imported only when that estimator is built, so
importing ``uvs_core`` or listing the names never imports torch; the neural
estimators live in ``uvs_learning``, which registers them from its own
setup.py. Adding an estimator means one module with an :class:`Estimator`
subclass and one entry point (docs/plugins.md).

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
from uvs_core.estimators.registry import (
    EstimatorSpec,
    estimator_names,
    estimator_spec,
    estimator_specs,
    register_estimator,
)

__all__ = [
    "Estimator",
    "EstimatorSpec",
    "ModelError",
    "NotFittedError",
    "estimator_class",
    "estimator_names",
    "estimator_spec",
    "estimator_specs",
    "load_estimator",
    "make_estimator",
    "register_estimator",
    "split_by_trajectory",
]


def estimator_class(name: str) -> type[Estimator]:
    """The Estimator subclass registered as ``name`` (imports its module).

    ValueError listing the valid names for an unknown name; ImportError with
    a hint when the implementing package (e.g. uvs_learning/torch) is absent.
    """
    target = estimator_spec(name).target
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"estimator {name!r} needs module {module_name!r}, which cannot be imported "
            f"({exc}); the neural estimators need the uvs_learning package and PyTorch"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"{target} (estimator {name!r}) is not an Estimator subclass")
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
