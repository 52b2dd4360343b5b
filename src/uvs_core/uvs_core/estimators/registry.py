"""The estimator registry: entry points of group ``uvs.estimators``.

Every estimator, uvs's own included, is a plug-in. A distribution declares
one entry point per estimator; its name is the estimator's registry name and
it names an :class:`EstimatorSpec` (or a dict of its fields) in a light
module, one that imports neither torch nor the estimator's implementation::

    # setup.py / pyproject.toml of the distribution
    entry_points={"uvs.estimators": ["linear_ls = my_pkg.specs:LINEAR_LS"]}

    # my_pkg/specs.py
    LINEAR_LS = EstimatorSpec("my_pkg.linear:LinearLeastSquares", learned=True,
                              model_files=("linear.npz",))

The spec declares what the rest of uvs needs to know before the class is
imported (whether a model must be loaded, whether requests carrying ``x``
update it, whether it has its own batched state); the class itself is
imported from ``target`` only when an estimator is built
(:func:`uvs_core.estimators.estimator_class`). Listing the names therefore
never imports torch. docs/plugins.md shows a whole plug-in package.

Never imports numpy, torch or rclpy.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, fields
from importlib import metadata

__all__ = [
    "GROUP",
    "EstimatorSpec",
    "estimator_names",
    "estimator_spec",
    "estimator_specs",
    "register_estimator",
]

#: the entry point group every estimator is registered in
GROUP = "uvs.estimators"

#: sort key of a spec that gives none: after uvs's own estimators
DEFAULT_ORDER = 1000


@dataclass(frozen=True)
class EstimatorSpec:
    """What an estimator is, declared without importing it.

    target: ``"package.module:Class"``, a subclass of
        :class:`uvs_core.estimators.Estimator` imported on first use.
    learned: True when it is served from a trained model directory
        (``uvs train`` writes one; the estimator node declares a
        ``models.<name>`` parameter for it and loads that model).
    online: True when ``update(qa (k,), x (m,))`` changes its estimate (a
        request carrying ``task_position`` updates it; rollouts keep one
        state per trajectory).
    batched_update: True when the class has ``batch_view(B)``, its own state
        for B trajectories updated at once (``reset()``, ``update(qa (B, k),
        x (B, m))``, ``estimate_batch(qa (B, k), x) -> (B, m, k)``); an online
        estimator without it is copied once per trajectory.
    model_files: the files its model directory holds besides
        ``metadata.json`` (e.g. ``("model.pt",)``).
    order: sort key of the name lists (uvs's own are 0..99; ties by name).
    """

    target: str
    learned: bool = False
    online: bool = False
    batched_update: bool = False
    model_files: tuple[str, ...] = ()
    order: int = DEFAULT_ORDER

    def __post_init__(self):
        module, sep, attr = str(self.target).partition(":")
        if not (module and sep and attr):
            raise ValueError(f"estimator target must be 'module:Class', got {self.target!r}")
        object.__setattr__(self, "model_files", tuple(self.model_files))

    @classmethod
    def coerce(cls, value) -> EstimatorSpec:
        """An EstimatorSpec from a spec, or from a dict of its fields (a plug-in
        that does not import uvs_core in its spec module); TypeError otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in fields(cls)})
            if unknown:
                raise TypeError(f"unknown estimator spec field(s) {unknown}")
            return cls(**value)
        raise TypeError(f"expected an EstimatorSpec or a dict of its fields, "
                        f"got {type(value).__name__}")


# Registered in this process by register_estimator(), after the entry points.
_EXTRA: dict[str, EstimatorSpec] = {}


@functools.cache
def _from_entry_points() -> dict[str, EstimatorSpec]:
    """name -> spec of every ``uvs.estimators`` entry point installed (read once).

    An entry point that cannot be loaded, or that names no spec, is left out
    with a warning saying why; the first of two entries with one name wins.
    """
    found: dict[str, EstimatorSpec] = {}
    for entry in metadata.entry_points(group=GROUP):
        if entry.name in found:
            continue
        try:
            found[entry.name] = EstimatorSpec.coerce(entry.load())
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break uvs
            warnings.warn(f"estimator plug-in {entry.name!r} ({entry.value}) is ignored: "
                          f"{type(exc).__name__}: {exc}", stacklevel=2)
    return found


def estimator_specs() -> dict[str, EstimatorSpec]:
    """name -> spec of every registered estimator, sorted by (order, name)."""
    specs = {**_from_entry_points(), **_EXTRA}
    return dict(sorted(specs.items(), key=lambda item: (item[1].order, item[0])))


def estimator_names() -> tuple[str, ...]:
    """Every registered estimator name, uvs's own first (in the paper's order)."""
    return tuple(estimator_specs())


def estimator_spec(name: str) -> EstimatorSpec:
    """The spec registered as ``name``; ValueError listing the valid names."""
    specs = estimator_specs()
    try:
        return specs[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown estimator {name!r}; valid: {', '.join(specs)}"
        ) from None


def register_estimator(name: str, spec) -> EstimatorSpec:
    """Register ``name`` in this process only: ``spec`` is an EstimatorSpec, a dict
    of its fields, or a ``"module:Class"`` target (a stateless estimator that needs
    no model). An installed plug-in uses the entry point instead."""
    spec = EstimatorSpec(spec) if isinstance(spec, str) else EstimatorSpec.coerce(spec)
    _EXTRA[name] = spec
    return spec
