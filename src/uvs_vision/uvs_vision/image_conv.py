"""sensor_msgs/Image <-> numpy, without cv_bridge and without rclpy.

Works on anything with the Image fields (height, width, encoding, is_bigendian,
step, data), so it is testable without ROS; :func:`array_to_image_fields`
returns those fields as a dict for ``sensor_msgs.msg.Image(**fields)``.

Arrays are (H, W, C) for colour encodings and (H, W) for mono ones, rows top to
bottom, in the encoding's own channel order (an rgb8 array is R, G, B).
"""

from __future__ import annotations

import array
import sys
from typing import Any

import cv2
import numpy as np

__all__ = ["ENCODINGS", "ImageConversionError", "image_msg_to_array",
           "array_to_image_fields", "to_bgr", "from_bgr", "image_msg_to_bgr"]

# encoding: (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
}

_HOST_BIG_ENDIAN = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """An image message that cannot be read (unknown encoding, short data, bad step)."""


def _layout(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def image_msg_to_array(msg: Any) -> np.ndarray:
    """Image message -> array (H, W, C) or (H, W), a copy in host byte order.

    Honours ``step`` (row padding) and ``is_bigendian`` (multi-byte encodings).
    Raises ImageConversionError when the fields are inconsistent.
    """
    dtype, channels = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is shorter than a row of {width} {msg.encoding} pixels ({row_bytes} B)")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < step * height:
        raise ImageConversionError(
            f"image data has {buffer.size} B, expected step * height = {step * height} B")
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    out = np.ascontiguousarray(rows).view(wire).reshape(height, width, channels)
    out = out.astype(dtype, copy=True)  # host byte order, owns its memory
    return out[..., 0] if channels == 1 else out


def array_to_image_fields(image: np.ndarray, encoding: str) -> dict[str, Any]:
    """Array (H, W, C) or (H, W) -> the Image fields (header excluded) as a dict.

    Rows are packed (step = W * C * itemsize), little-endian unless the host is
    big-endian. ``data`` is an ``array.array('B')``, which the generated message
    accepts without a per-element check.
    """
    dtype, channels = _layout(encoding)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ImageConversionError(
            f"{encoding} needs {channels} channel(s); got an array of shape {image.shape}")
    if image.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs dtype {dtype}; got {image.dtype}")
    height, width = image.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": int(_HOST_BIG_ENDIAN and dtype.itemsize > 1),
        "step": int(width * channels * dtype.itemsize),
        "data": array.array("B", np.ascontiguousarray(image).tobytes()),
    }


def to_bgr(image: np.ndarray, encoding: str) -> np.ndarray:
    """Array in ``encoding`` -> (H, W, 3) uint8 BGR. 16-bit mono is scaled by 1/256."""
    dtype, channels = _layout(encoding)
    image = np.asarray(image)
    if dtype.itemsize == 2:
        image = (image >> 8).astype(np.uint8)
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    conversions = {"bgr8": None, "8UC3": None, "rgb8": cv2.COLOR_RGB2BGR,
                   "bgra8": cv2.COLOR_BGRA2BGR, "rgba8": cv2.COLOR_RGBA2BGR}
    code = conversions[encoding]
    return np.ascontiguousarray(image) if code is None else cv2.cvtColor(image, code)


def from_bgr(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> array in ``encoding`` (8-bit encodings only)."""
    dtype, _ = _layout(encoding)
    if dtype.itemsize != 1:
        raise ImageConversionError(f"from_bgr: {encoding} is not an 8-bit encoding")
    conversions = {"bgr8": None, "8UC3": None, "rgb8": cv2.COLOR_BGR2RGB,
                   "bgra8": cv2.COLOR_BGR2BGRA, "rgba8": cv2.COLOR_BGR2RGBA,
                   "mono8": cv2.COLOR_BGR2GRAY, "8UC1": cv2.COLOR_BGR2GRAY}
    code = conversions[encoding]
    return np.ascontiguousarray(bgr) if code is None else cv2.cvtColor(bgr, code)


def image_msg_to_bgr(msg: Any) -> np.ndarray:
    """Image message in any supported encoding -> (H, W, 3) uint8 BGR."""
    return to_bgr(image_msg_to_array(msg), msg.encoding)
