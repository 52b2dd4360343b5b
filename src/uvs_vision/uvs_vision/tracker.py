"""HSV hue tracker: coloured blob centroids in a BGR image (pure; no rclpy).

Pipeline: BGR -> HSV (OpenCV: H 0..179, S and V 0..255) -> keep pixels whose
hue is in [hue_low, hue_high] (wrapping through 0 when hue_low > hue_high, as
red needs) with S >= sat_min and V >= val_min -> morphological opening
(removes specks) then closing (fills holes) -> connected components -> the
largest ``max_markers`` components of at least ``min_area`` px, largest first.

Pixel coordinates: u right, v down, pixel centres at integers (OpenCV's and
:class:`uvs_core.tasks.PinholeCamera`'s convention); a centroid is the mean of
its component's pixel coordinates, so it is sub-pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

__all__ = ["TrackerConfig", "Detection", "HueTracker", "hue_mask", "draw_detection"]

HUE_MAX = 179   # OpenCV 8-bit HSV: hue is degrees / 2
CHANNEL_MAX = 255
MAX_KERNEL = 31
MAX_MARKERS = 16


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings; invalid values raise ValueError with the reason.

    hue_low, hue_high: 0..179 (OpenCV hue, degrees / 2), inclusive; hue_low >
        hue_high selects the range wrapping through 0 (e.g. 170..10 for red).
    sat_min, val_min: 0..255, minimum saturation and value.
    min_area: px (pixel count), > 0; smaller blobs are ignored.
    max_markers: 1..16, how many blobs to report, largest first.
    open_kernel, close_kernel: px, 0..31, elliptic structuring element sizes
        of the opening and closing; 0 (or 1) skips that step.
    """

    hue_low: int = 170
    hue_high: int = 10
    sat_min: int = 120
    val_min: int = 70
    min_area: float = 20.0
    max_markers: int = 1
    open_kernel: int = 3
    close_kernel: int = 5

    def __post_init__(self) -> None:
        reasons = self.problems()
        if reasons:
            raise ValueError("; ".join(reasons))

    def problems(self) -> list[str]:
        """Why this configuration is invalid (empty when it is valid)."""
        out = []

        def integer(name: str, lo: int, hi: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                out.append(f"{name} must be an integer, got {value!r}")
            elif not lo <= value <= hi:
                out.append(f"{name} must be in {lo}..{hi}, got {value}")

        integer("hue_low", 0, HUE_MAX)
        integer("hue_high", 0, HUE_MAX)
        integer("sat_min", 0, CHANNEL_MAX)
        integer("val_min", 0, CHANNEL_MAX)
        integer("max_markers", 1, MAX_MARKERS)
        integer("open_kernel", 0, MAX_KERNEL)
        integer("close_kernel", 0, MAX_KERNEL)
        area = self.min_area
        if (isinstance(area, bool) or not isinstance(area, (int, float, np.number))
                or not math.isfinite(area) or area <= 0):
            out.append(f"min_area must be a finite number of pixels > 0, got {area!r}")
        return out

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class Detection:
    """Tracker output for one image.

    centroids: (K, 2) px (u, v), K <= max_markers, largest blob first.
    areas: (K,) px, pixel counts of the blobs.
    mask: (H, W) uint8, 255 where the cleaned colour mask is set.
    """

    centroids: np.ndarray
    areas: np.ndarray
    mask: np.ndarray

    @property
    def found(self) -> bool:
        """Whether at least one marker was detected."""
        return len(self.areas) > 0

    @property
    def position(self) -> list[float]:
        """Centroids flattened (u0, v0, u1, v1, ...), px."""
        return [float(c) for c in self.centroids.ravel()]


def hue_mask(hsv: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """hsv: (H, W, 3) uint8 OpenCV HSV -> (H, W) uint8 mask (255 = marker colour)."""
    lo, hi = config.hue_low, config.hue_high
    if lo <= hi:
        return cv2.inRange(hsv, (lo, config.sat_min, config.val_min),
                           (hi, CHANNEL_MAX, CHANNEL_MAX))
    # Wraps through 0: [lo, 179] or [0, hi].
    upper = cv2.inRange(hsv, (lo, config.sat_min, config.val_min),
                        (HUE_MAX, CHANNEL_MAX, CHANNEL_MAX))
    lower = cv2.inRange(hsv, (0, config.sat_min, config.val_min),
                        (hi, CHANNEL_MAX, CHANNEL_MAX))
    return cv2.bitwise_or(upper, lower)


def _kernel(size: int) -> np.ndarray | None:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None


class HueTracker:
    """Finds the ``config.max_markers`` largest blobs of the configured hue."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()

    @property
    def config(self) -> TrackerConfig:
        return self._config

    @config.setter
    def config(self, config: TrackerConfig) -> None:
        self._config = config
        self._open = _kernel(config.open_kernel)
        self._close = _kernel(config.close_kernel)

    def mask(self, bgr: np.ndarray) -> np.ndarray:
        """bgr: (H, W, 3) uint8 -> (H, W) uint8 cleaned mask."""
        bgr = np.asarray(bgr)
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        mask = hue_mask(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), self._config)
        if self._open is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        if self._close is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        return mask

    def detect(self, bgr: np.ndarray) -> Detection:
        """bgr: (H, W, 3) uint8 -> Detection (centroids px, areas px, mask)."""
        mask = self.mask(bgr)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        # Label 0 is the background.
        areas = stats[1:count, cv2.CC_STAT_AREA].astype(float)
        centres = centroids[1:count].astype(float).reshape(-1, 2)
        keep = areas >= self._config.min_area
        areas, centres = areas[keep], centres[keep]
        order = np.argsort(-areas, kind="stable")[: self._config.max_markers]
        return Detection(centroids=centres[order], areas=areas[order], mask=mask)


def draw_detection(bgr: np.ndarray, detection: Detection, *, mask_alpha: float = 0.35,
                   mask_color: tuple[int, int, int] = (255, 255, 0),
                   label: str | None = None) -> np.ndarray:
    """A copy of ``bgr`` (H, W, 3) uint8 with the detection drawn.

    The mask is tinted with ``mask_color`` (BGR) at ``mask_alpha``; each blob
    gets a circle of its equivalent radius, a crosshair at its centroid and its
    (u, v); the top-left corner says how many markers were found, or LOST.
    """
    out = np.array(bgr, dtype=np.uint8, order="C", copy=True)
    if mask_alpha > 0 and detection.mask is not None:
        on = detection.mask > 0
        if on.any():
            tint = np.asarray(mask_color, dtype=np.float32)
            out[on] = ((1.0 - mask_alpha) * out[on] + mask_alpha * tint).astype(np.uint8)
    colours = [(0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0)]
    for i, ((u, v), area) in enumerate(zip(detection.centroids, detection.areas)):
        colour = colours[i % len(colours)]
        centre = (int(round(u)), int(round(v)))
        radius = max(3, int(round(math.sqrt(area / math.pi))))
        cv2.circle(out, centre, radius, colour, 1, cv2.LINE_AA)
        arm = radius + 6
        cv2.line(out, (centre[0] - arm, centre[1]), (centre[0] + arm, centre[1]), colour, 1)
        cv2.line(out, (centre[0], centre[1] - arm), (centre[0], centre[1] + arm), colour, 1)
        cv2.putText(out, f"{i}: ({u:.1f}, {v:.1f})", (centre[0] + arm + 2, centre[1] - 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    status = (f"{len(detection.areas)} marker(s)" if detection.found else "LOST")
    if label:
        status = f"{label}  {status}"
    cv2.putText(out, status, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 255, 0) if detection.found else (0, 0, 255), 1, cv2.LINE_AA)
    return out
