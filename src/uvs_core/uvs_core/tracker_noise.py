"""A noisy marker tracker: pixel noise, dropped frames and wrong blobs (pure, no rclpy).

One model serves the simulated camera (``uvs_vision.sim_camera``, which draws what
it samples, so the real hue tracker reads it) and the offline benchmark (which
applies it to the task state directly, batched):

- pixel noise: the marker is seen at its true pixel plus N(0, ``pixel_std``) px
  per axis;
- dropped frames: with probability ``drop_prob`` a frame is lost. The camera
  publishes nothing for it; offline, the controller keeps acting on the last
  measurement it had (a stale x);
- wrong blobs: with probability ``outlier_prob`` a distractor of the marker's
  colour appears elsewhere in the image, larger than the marker, so a tracker that
  keeps the largest blob reports the distractor's centre. Offline, the measurement
  is a pixel drawn uniformly in the image, at least ``outlier_min_px`` from the
  true one.

The paper's Table III lost points to exactly these tracking errors. Each effect is
drawn independently per frame, from a generator seeded by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TrackerNoise", "FrameNoise", "sample_frame", "observe_batch", "noisy_dataset_x"]


@dataclass(frozen=True)
class TrackerNoise:
    """Tracker errors; all zero (the default) is a perfect tracker.

    pixel_std: px, standard deviation of the measured pixel per axis, >= 0.
    drop_prob: probability that a frame is lost, 0 <= p < 1.
    outlier_prob: probability that a frame shows a wrong blob, 0 <= p < 1.
    outlier_min_px: px, the wrong blob is at least this far from the marker, >= 0.
    Invalid values raise ValueError with the reason.
    """

    pixel_std: float = 0.0
    drop_prob: float = 0.0
    outlier_prob: float = 0.0
    outlier_min_px: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pixel_std) and self.pixel_std >= 0):
            raise ValueError(f"pixel_std must be >= 0 px, got {self.pixel_std}")
        for name in ("drop_prob", "outlier_prob"):
            p = getattr(self, name)
            if not (math.isfinite(p) and 0.0 <= p < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if not (math.isfinite(self.outlier_min_px) and self.outlier_min_px >= 0):
            raise ValueError(f"outlier_min_px must be >= 0 px, got {self.outlier_min_px}")

    @property
    def active(self) -> bool:
        """Whether any effect is on."""
        return self.pixel_std > 0 or self.drop_prob > 0 or self.outlier_prob > 0


@dataclass(frozen=True)
class FrameNoise:
    """What happens to one frame.

    dropped: the frame is lost (nothing published).
    offset: (2,) px, added to the marker's true pixel (u, v).
    outlier: (2,) px, centre of a wrong blob, or None.
    """

    dropped: bool
    offset: np.ndarray
    outlier: np.ndarray | None


def _far_pixels(rng: np.random.Generator, uv: np.ndarray, width: int, height: int,
                min_px: float, tries: int = 32) -> np.ndarray:
    """(B, 2) px drawn uniformly in the image, each at least ``min_px`` from uv (B, 2)
    (redrawn up to ``tries`` times; a point that never gets there keeps its last draw,
    which only happens when the image has no room that far)."""
    out = np.empty_like(uv, dtype=float)
    todo = np.ones(uv.shape[0], dtype=bool)
    for _ in range(tries):
        idx = np.flatnonzero(todo)
        if idx.size == 0:
            break
        draw = rng.uniform((0.0, 0.0), (width - 1.0, height - 1.0), size=(idx.size, 2))
        out[idx] = draw
        far = ~(np.linalg.norm(draw - uv[idx], axis=1) < min_px)   # NaN uv: anywhere
        todo[idx[far]] = False
    return out


def sample_frame(noise: TrackerNoise, rng: np.random.Generator, uv, width: int,
                 height: int, margin: float = 0.0) -> FrameNoise:
    """Draw one frame's errors for a marker at ``uv`` (2,) px (NaN: not in view) in a
    ``width`` x ``height`` px image; a wrong blob's centre keeps ``margin`` px from the
    image border (so it is drawn whole) and ``noise.outlier_min_px`` from uv.

    The same number of draws is made whatever the outcome, so one seed gives one
    sequence of errors whichever effects are on.
    """
    dropped = bool(rng.random() < noise.drop_prob)
    offset = noise.pixel_std * rng.standard_normal(2)
    wrong = bool(rng.random() < noise.outlier_prob)
    m = float(min(margin, (width - 1) / 2.0, (height - 1) / 2.0))
    inner_w, inner_h = int(round(width - 2 * m)), int(round(height - 2 * m))
    where = _far_pixels(rng, np.asarray(uv, dtype=float).reshape(1, 2) - m,
                        inner_w, inner_h, noise.outlier_min_px)[0] + m
    return FrameNoise(dropped=dropped, offset=offset, outlier=where if wrong else None)


def observe_batch(noise: TrackerNoise, rng: np.random.Generator, x: np.ndarray,
                  last: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """What a noisy tracker reports for B markers at their true pixels.

    x: (B, 2) px, the true (u, v); last: (B, 2) px, the previous measurement (None at
    the first step: a dropped first frame then reads the true pixel, as a controller
    waits for its first state). Returns (B, 2) px: x + N(0, pixel_std), a uniform
    pixel >= outlier_min_px away with probability outlier_prob, ``last`` with
    probability drop_prob.
    """
    x = np.asarray(x, dtype=float)
    b = x.shape[0]
    dropped = rng.random(b) < noise.drop_prob
    measured = x + noise.pixel_std * rng.standard_normal(x.shape)
    wrong = rng.random(b) < noise.outlier_prob
    if wrong.any():
        measured[wrong] = _far_pixels(rng, x[wrong], width, height, noise.outlier_min_px)
    if last is not None:
        measured[dropped] = np.asarray(last, dtype=float)[dropped]
    return measured


def noisy_dataset_x(noise: TrackerNoise, rng: np.random.Generator, x: np.ndarray,
                    traj: np.ndarray, width: int, height: int) -> np.ndarray:
    """The task states of a babbling dataset as the noisy tracker would have recorded
    them: x (N, 2) px in time order, traj (N,) trajectory ids -> (N, 2) px. A dropped
    frame repeats the previous sample of its trajectory (a recorder pairs each q with
    the newest state it has)."""
    x = np.asarray(x, dtype=float)
    traj = np.asarray(traj)
    measured = x + noise.pixel_std * rng.standard_normal(x.shape)
    wrong = rng.random(x.shape[0]) < noise.outlier_prob
    if wrong.any():
        measured[wrong] = _far_pixels(rng, x[wrong], width, height, noise.outlier_min_px)
    dropped = rng.random(x.shape[0]) < noise.drop_prob
    dropped[0] = False
    dropped[1:] &= traj[1:] == traj[:-1]
    for i in np.flatnonzero(dropped):   # in order: a run of drops holds one value
        measured[i] = measured[i - 1]
    return measured
