"""Renders the simulated end-effector marker through a task's pinhole camera (pure).

The marker is a filled disc centred on the tool point's projection
``task.camera.project(robot.position(q))``, so a perfect tracker reads back
exactly ``task.x_from_q(q)``. Its radius is either fixed in pixels or the
projection of a sphere of physical radius ``marker_radius`` m at the tool
point's depth (f * R / z). Disc edges are anti-aliased by supersampling, so
the disc's centre is sub-pixel accurate. It sits on a background that is a
solid colour, a gradient, or a gradient with a checker texture (desaturated,
so it is not mistaken for the marker), with optional seeded Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from uvs_core.tasks import PinholeCamera, Task

__all__ = ["BACKGROUNDS", "RenderConfig", "MarkerRenderer", "draw_disc", "make_background"]

BACKGROUNDS = ("solid", "gradient", "textured")


def _colour(value, name: str) -> tuple[int, int, int]:
    values = tuple(value)
    if len(values) != 3 or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255
            for c in values):
        raise ValueError(f"{name} must be three integers 0..255 (B, G, R), got {list(values)}")
    return tuple(int(c) for c in values)


@dataclass(frozen=True)
class RenderConfig:
    """How the simulated camera image looks; invalid values raise ValueError.

    marker_color: (B, G, R) 0..255.
    marker_radius: m, physical radius of the marker (projected with depth); > 0.
    marker_radius_px: px; > 0 fixes the radius in the image, 0 uses marker_radius.
    background: one of BACKGROUNDS.
    background_color: (B, G, R) 0..255, mean colour of the background.
    noise_std: Gaussian pixel noise, standard deviation in intensity levels, >= 0.
    seed: seed of the noise generator.
    """

    marker_color: tuple[int, int, int] = (40, 40, 220)
    marker_radius: float = 0.04
    marker_radius_px: float = 0.0
    background: str = "textured"
    background_color: tuple[int, int, int] = (120, 115, 110)
    noise_std: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "marker_color", _colour(self.marker_color, "marker_color"))
        object.__setattr__(self, "background_color",
                           _colour(self.background_color, "background_color"))
        if not (math.isfinite(self.marker_radius) and self.marker_radius > 0):
            raise ValueError(f"marker_radius must be > 0 m, got {self.marker_radius}")
        if not (math.isfinite(self.marker_radius_px) and self.marker_radius_px >= 0):
            raise ValueError(f"marker_radius_px must be >= 0 px, got {self.marker_radius_px}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} unknown; choose one of "
                             f"{', '.join(BACKGROUNDS)}")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")


def make_background(width: int, height: int, kind: str,
                    colour: tuple[int, int, int]) -> np.ndarray:
    """(height, width, 3) uint8 BGR background of ``kind`` (see BACKGROUNDS) around ``colour``.

    The gradient and texture change all channels together (grey shading), so
    they add no saturation for the hue tracker to pick up.
    """
    base = np.asarray(colour, dtype=np.float32)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[...] = base
    if kind in ("gradient", "textured"):
        v = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
        u = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
        image += (25.0 * v + 10.0 * u)[..., None]
    if kind == "textured":
        rows = (np.arange(height) // 32)[:, None]
        cols = (np.arange(width) // 32)[None, :]
        image += np.where((rows + cols) % 2 == 0, 12.0, -12.0).astype(np.float32)[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_disc(image: np.ndarray, centre, radius: float, colour, samples: int = 4) -> None:
    """Fill a disc into ``image`` (H, W, 3) uint8 in place, anti-aliased.

    centre: (u, v) px, pixel centres at integers; radius: px. Each pixel is
    blended with ``colour`` by the fraction of its ``samples`` x ``samples``
    sub-pixel grid inside the disc. Parts outside the image are clipped.
    """
    height, width = image.shape[:2]
    u, v = float(centre[0]), float(centre[1])
    if not (math.isfinite(u) and math.isfinite(v) and radius > 0):
        return
    u0, u1 = max(0, math.floor(u - radius - 1)), min(width, math.ceil(u + radius + 2))
    v0, v1 = max(0, math.floor(v - radius - 1)), min(height, math.ceil(v + radius + 2))
    if u0 >= u1 or v0 >= v1:
        return
    offsets = (np.arange(samples, dtype=np.float64) + 0.5) / samples - 0.5
    xs = (np.arange(u0, u1)[:, None] + offsets[None, :]).ravel() - u      # (Wb * s,)
    ys = (np.arange(v0, v1)[:, None] + offsets[None, :]).ravel() - v      # (Hb * s,)
    inside = (ys[:, None] ** 2 + xs[None, :] ** 2) <= radius * radius
    coverage = inside.reshape(v1 - v0, samples, u1 - u0, samples).mean(axis=(1, 3))
    if not coverage.any():
        return
    patch = image[v0:v1, u0:u1].astype(np.float32)
    alpha = coverage[..., None].astype(np.float32)
    patch = (1.0 - alpha) * patch + alpha * np.asarray(colour, dtype=np.float32)
    image[v0:v1, u0:u1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)


class MarkerRenderer:
    """Simulated camera images of a visual-servo task's marker.

    task: a task with a ``camera`` (:class:`PinholeCamera`), e.g. visual_servo.
    Rendering is deterministic but for the noise, whose generator is seeded
    with ``config.seed`` (the same sequence of renders gives the same images).
    """

    def __init__(self, task: Task, config: RenderConfig | None = None) -> None:
        camera = getattr(task, "camera", None)
        if not isinstance(camera, PinholeCamera):
            raise ValueError(f"task {task.name!r} has no camera to render through")
        self.task = task
        self.camera: PinholeCamera = camera
        self._config = config or RenderConfig()
        self._rng = np.random.default_rng(self._config.seed)
        self._background = self._make_background()

    @property
    def config(self) -> RenderConfig:
        return self._config

    @config.setter
    def config(self, config: RenderConfig) -> None:
        old, self._config = self._config, config
        if (config.background, config.background_color) != (old.background,
                                                             old.background_color):
            self._background = self._make_background()
        if config.seed != old.seed:
            self._rng = np.random.default_rng(config.seed)

    def _make_background(self) -> np.ndarray:
        return make_background(self.camera.width, self.camera.height,
                               self._config.background, self._config.background_color)

    def marker(self, q: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Where the marker appears. q: (n,) rad, all joints ->
        (uv (2,) px, radius px, visible: the tool point is in view)."""
        p = self.task.robot.position(np.asarray(q, dtype=float))
        visible = bool(self.camera.in_view(p))
        if not visible:
            return np.full(2, np.nan), 0.0, False
        uv = self.camera.project(p)
        depth = float(self.camera.to_camera(p)[2])
        if self._config.marker_radius_px > 0:
            radius = self._config.marker_radius_px
        else:
            radius = self.camera.fx * self._config.marker_radius / depth
        return uv, float(radius), True

    def render_at(self, uv, radius: float) -> np.ndarray:
        """(H, W, 3) uint8 BGR with the marker at ``uv`` px (omitted when uv is None)."""
        image = self._background.copy()
        if uv is not None:
            draw_disc(image, uv, radius, self._config.marker_color)
        if self._config.noise_std > 0:
            noise = self._rng.standard_normal(image.shape, dtype=np.float32)
            noisy = image.astype(np.float32) + self._config.noise_std * noise
            image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return image

    def render(self, q: np.ndarray) -> np.ndarray:
        """q: (n,) rad, all joints -> (H, W, 3) uint8 BGR camera image of the marker."""
        uv, radius, visible = self.marker(q)
        return self.render_at(uv if visible else None, radius)
