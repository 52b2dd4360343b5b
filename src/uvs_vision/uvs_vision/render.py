"""Renders the simulated markers through a task's pinhole camera (pure).

The marker is a filled disc centred on the tool point's projection
``task.camera.project(robot.position(q))``, so a perfect tracker reads back
exactly ``task.x_from_q(q)``. Its radius is either fixed in pixels or the
projection of a sphere of physical radius ``marker_radius`` m at the tool
point's depth (f * R / z). Disc edges are anti-aliased by supersampling, so
the disc's centre is sub-pixel accurate. It sits on a background that is a
solid colour, a gradient, or a gradient with a checker texture (desaturated,
so it is not mistaken for the marker), with optional seeded Gaussian noise.

The noise of a frame is a window, at a random offset, of a bank of Gaussian samples
twice the image's size drawn once from the seed: drawing 0.9 M normals per 640x480
frame cost 13 ms of CPU (40 % of a core at 30 Hz, the largest share of the visual
graph on a loaded machine); a window and a saturating add cost about 2 ms. Each pixel's
noise is still N(0, noise_std); consecutive frames are shifted windows of one bank.

An optional second marker shows a target: a ring (``target_color``, outer radius
``target_radius_px``, band ``target_ring_px``) centred on the projection of a
point in the base frame, as the paper's real visual-servoing set-up showed a
green target beside the tracked marker. It is a ring, drawn under the
end-effector disc, so that a disc sitting on the target (convergence) leaves the
ring whole and its centroid where it was: a target disc would be covered by the
end-effector marker just as the servo arrives, and the target lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from uvs_core.tasks import PinholeCamera, Task

__all__ = ["BACKGROUNDS", "RenderConfig", "MarkerRenderer", "draw_disc", "draw_ring",
           "make_background"]

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
    target_color: (B, G, R) 0..255 of the target ring.
    target_radius_px: px, outer radius of the target ring; > 0.
    target_ring_px: px, width of the ring's band; 0 < width <= target_radius_px
        (equal: a filled disc).
    """

    marker_color: tuple[int, int, int] = (40, 40, 220)
    marker_radius: float = 0.04
    marker_radius_px: float = 0.0
    background: str = "textured"
    background_color: tuple[int, int, int] = (120, 115, 110)
    noise_std: float = 2.0
    seed: int = 0
    target_color: tuple[int, int, int] = (40, 200, 40)
    target_radius_px: float = 18.0
    target_ring_px: float = 4.0

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
        object.__setattr__(self, "target_color", _colour(self.target_color, "target_color"))
        if not (math.isfinite(self.target_radius_px) and self.target_radius_px > 0):
            raise ValueError(f"target_radius_px must be > 0 px, got {self.target_radius_px}")
        if not (math.isfinite(self.target_ring_px)
                and 0 < self.target_ring_px <= self.target_radius_px):
            raise ValueError(f"target_ring_px must be > 0 and <= target_radius_px "
                             f"({self.target_radius_px:g}) px, got {self.target_ring_px}")


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


def draw_disc(image: np.ndarray, centre, radius: float, colour, samples: int = 4,
              inner_radius: float = 0.0) -> None:
    """Fill a disc into ``image`` (H, W, 3) uint8 in place, anti-aliased.

    centre: (u, v) px, pixel centres at integers; radius: px. Each pixel is
    blended with ``colour`` by the fraction of its ``samples`` x ``samples``
    sub-pixel grid inside the disc. Parts outside the image are clipped.
    inner_radius: px; > 0 leaves the disc of that radius out (a ring).
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
    r2 = ys[:, None] ** 2 + xs[None, :] ** 2
    inside = r2 <= radius * radius
    if inner_radius > 0:
        inside &= r2 > inner_radius * inner_radius
    coverage = inside.reshape(v1 - v0, samples, u1 - u0, samples).mean(axis=(1, 3))
    if not coverage.any():
        return
    patch = image[v0:v1, u0:u1].astype(np.float32)
    alpha = coverage[..., None].astype(np.float32)
    patch = (1.0 - alpha) * patch + alpha * np.asarray(colour, dtype=np.float32)
    image[v0:v1, u0:u1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)


def draw_ring(image: np.ndarray, centre, radius: float, width: float, colour,
              samples: int = 4) -> None:
    """Draw a ring of outer ``radius`` px and band ``width`` px into ``image`` in place
    (anti-aliased like :func:`draw_disc`); its centroid is ``centre`` (u, v) px."""
    draw_disc(image, centre, radius, colour, samples, inner_radius=radius - width)


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
        self._noise_bank: np.ndarray | None = None

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
        if (config.seed, config.noise_std) != (old.seed, old.noise_std):
            self._noise_bank = None

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

    def target(self, point) -> tuple[np.ndarray, bool]:
        """Where a target point appears. point: (3,) m, base frame ->
        (uv (2,) px, visible: in front of the camera and inside the image)."""
        p = np.asarray(point, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)) or not self.camera.in_view(p):
            return np.full(2, np.nan), False
        return self.camera.project(p), True

    def render_at(self, uv, radius: float, target_uv=None, distractor=None) -> np.ndarray:
        """(H, W, 3) uint8 BGR with the marker at ``uv`` px (omitted when uv is None) over
        the target ring at ``target_uv`` px (omitted when None). distractor: (uv (2,) px,
        radius px) of a wrong blob in the marker's colour (a noisy tracker's outlier,
        uvs_core.tracker_noise), or None."""
        image = self._background.copy()
        if target_uv is not None:
            draw_ring(image, target_uv, self._config.target_radius_px,
                      self._config.target_ring_px, self._config.target_color)
        if distractor is not None:
            draw_disc(image, distractor[0], distractor[1], self._config.marker_color)
        if uv is not None:
            draw_disc(image, uv, radius, self._config.marker_color)
        if self._config.noise_std > 0:
            image = self._add_noise(image)
        return image

    def _add_noise(self, image: np.ndarray) -> np.ndarray:
        """image (H, W, 3) uint8 plus N(0, noise_std) per value, rounded and saturated."""
        size = image.size
        if self._noise_bank is None or self._noise_bank.size != 2 * size:
            self._noise_bank = (self._config.noise_std
                                * self._rng.standard_normal(2 * size, dtype=np.float32))
        offset = int(self._rng.integers(0, size + 1))
        noisy = image.reshape(-1).astype(np.float32)
        noisy += self._noise_bank[offset:offset + size]
        np.rint(noisy, out=noisy)
        np.clip(noisy, 0, 255, out=noisy)
        return noisy.astype(np.uint8).reshape(image.shape)

    def render(self, q: np.ndarray, target_point=None) -> np.ndarray:
        """q: (n,) rad, all joints -> (H, W, 3) uint8 BGR camera image of the marker, and of
        the target ring at ``target_point`` ((3,) m, base frame) when given and in view."""
        uv, radius, visible = self.marker(q)
        target_uv = None
        if target_point is not None:
            target_uv, target_visible = self.target(target_point)
            target_uv = target_uv if target_visible else None
        return self.render_at(uv if visible else None, radius, target_uv)
