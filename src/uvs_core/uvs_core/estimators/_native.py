"""ctypes binding of ``_llknn.c``: LL-KNN's exact neighbour query and local fit, natively.

The library is an optional extension built by ``setup.py`` (``colcon build``);
:func:`available` says whether it was. :class:`NativeLocalLinear` owns every
array the C side reads or writes, so a call passes one pointer.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path

import numpy as np

__all__ = ["NativeLocalLinear", "available", "condition_number", "library_path"]

class _Index(ctypes.Structure):
    # Mirrors LLKNNIndex in _llknn.c, field for field.
    _fields_ = [
        ("n", ctypes.c_int32), ("d", ctypes.c_int32), ("m", ctypes.c_int32),
        ("nleaves", ctypes.c_int32), ("nblocks", ctypes.c_int32), ("k", ctypes.c_int32),
        ("prune", ctypes.c_double), ("ridge", ctypes.c_double),
        ("pts", ctypes.c_void_p), ("xs", ctypes.c_void_p),
        ("leaf_start", ctypes.c_void_p), ("leaf_box", ctypes.c_void_p),
        ("block_leaf", ctypes.c_void_p), ("block_box", ctypes.c_void_p),
        ("q", ctypes.c_void_p), ("heap_d", ctypes.c_void_p), ("heap_i", ctypes.c_void_p),
        ("block_lb", ctypes.c_void_p), ("leaf_lb", ctypes.c_void_p), ("order", ctypes.c_void_p),
        ("gram", ctypes.c_void_p), ("cross", ctypes.c_void_p), ("jac", ctypes.c_void_p),
        ("found", ctypes.c_int32),
    ]


def library_path() -> Path | None:
    """The built ``_llknn`` library beside this module, None when it was not built."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_llknn{suffix}"
        if path.is_file():
            return path
    return None


_LIB = None


def _library():
    global _LIB
    if _LIB is None:
        path = library_path()
        if path is None:
            raise ImportError("uvs_core's native LL-KNN library was not built "
                              "(no C compiler at install time?)")
        lib = ctypes.CDLL(str(path))
        p, i32 = ctypes.c_void_p, ctypes.c_int32
        lib.llknn_build.argtypes = [p, p, p, i32, i32, i32, i32, i32, p, p, p, p, p, p]
        lib.llknn_build.restype = ctypes.c_int
        lib.llknn_query.argtypes = [p]
        lib.llknn_query.restype = None
        lib.llknn_estimate.argtypes = [p]
        lib.llknn_estimate.restype = ctypes.c_int
        lib.llknn_estimate_batch.argtypes = [p, p, i32, p, p]
        lib.llknn_estimate_batch.restype = None
        lib.uvs_condition_number.argtypes = [p, i32, i32]
        lib.uvs_condition_number.restype = ctypes.c_double
        _LIB = lib
    return _LIB


_AVAILABLE = None


def available() -> bool:
    """Whether the native library is built and loads (looked up once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            _library()
            _AVAILABLE = True
        except (ImportError, OSError):
            _AVAILABLE = False
    return _AVAILABLE


def condition_number(jac: np.ndarray) -> float | None:
    """sigma_max / sigma_min of a finite float64 C-contiguous (r, c) matrix, r, c <= 64
    (inf when singular); None when the library is not built or cannot answer,
    for the caller to ask LAPACK."""
    if _LIB is None and not available():
        return None
    if not jac.flags.c_contiguous or jac.dtype != np.float64:
        jac = np.ascontiguousarray(jac, dtype=np.float64)
    value = _LIB.uvs_condition_number(jac.ctypes.data, jac.shape[0], jac.shape[1])
    return None if value < 0.0 else value


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


class NativeLocalLinear:
    """The samples (qa (N, d), x (N, m)) indexed for exact k-NN local linear fits.

    ``block_size`` >= ``leaf_size`` >= 1 set the grouping (see _llknn.c);
    ``eps`` >= 0 the approximation (0: exact); ``ridge`` as
    ``classical.local_linear_jacobians``.
    """

    MAX_D, MAX_M = 16, 32

    def __init__(self, qa: np.ndarray, x: np.ndarray, k: int, eps: float = 0.0,
                 ridge: float = 1e-10, block_size: int = 256, leaf_size: int = 8):
        lib = _library()
        n, d = qa.shape
        m = x.shape[1]
        if not 1 <= d <= self.MAX_D or not 1 <= m <= self.MAX_M:
            raise ValueError(f"native llknn: dimensions up to {self.MAX_D} joints and "
                             f"{self.MAX_M} task values, got {d} and {m}")
        if n >= 2**31 - 1:
            raise ValueError(f"native llknn: at most 2**31 - 2 samples, got {n}")
        self.pts = np.array(qa, dtype=np.float64, order="C")
        self.xs = np.array(x, dtype=np.float64, order="C")
        self.perm = np.empty(n, dtype=np.int64)
        leaf_start = np.empty(n + 1, dtype=np.int32)
        leaf_box = np.empty(2 * d * n, dtype=np.float32)
        block_leaf = np.empty(n + 1, dtype=np.int32)
        block_box = np.empty((2 * d, n), dtype=np.float32)
        counts = np.zeros(2, dtype=np.int32)
        status = lib.llknn_build(
            _ptr(self.pts), _ptr(self.xs), _ptr(self.perm), n, d, m, int(block_size),
            int(leaf_size), _ptr(leaf_start), _ptr(leaf_box), _ptr(block_leaf),
            _ptr(block_box), _ptr(counts), _ptr(counts[1:]))
        if status != 0:
            raise ValueError(f"native llknn: cannot index {n} samples of {d} joints and "
                             f"{m} task values with block_size {block_size}, "
                             f"leaf_size {leaf_size}")
        nleaves, nblocks = int(counts[0]), int(counts[1])
        self.leaf_start = leaf_start[:nleaves + 1].copy()
        self.leaf_box = leaf_box[:2 * d * nleaves].copy()
        self.block_leaf = block_leaf[:nblocks + 1].copy()
        self.block_box = np.ascontiguousarray(block_box[:, :nblocks])
        self.k = min(int(k), n)
        self.q = np.zeros(d)
        self.heap_d = np.empty(self.k)
        self.heap_i = np.empty(self.k, dtype=np.int32)
        self.block_lb = np.empty(nblocks)
        self.leaf_lb = np.empty(int(np.diff(self.block_leaf).max()))
        self.order = np.empty(nblocks, dtype=np.int32)
        self.gram = np.empty((d, d))
        self.cross = np.empty((d, m))
        self.jac = np.empty((m, d))
        self._index = _Index(
            n, d, m, nleaves, nblocks, self.k, (1.0 + float(eps)) ** 2, float(ridge),
            _ptr(self.pts), _ptr(self.xs), _ptr(self.leaf_start), _ptr(self.leaf_box),
            _ptr(self.block_leaf), _ptr(self.block_box), _ptr(self.q), _ptr(self.heap_d),
            _ptr(self.heap_i), _ptr(self.block_lb), _ptr(self.leaf_lb), _ptr(self.order),
            _ptr(self.gram), _ptr(self.cross), _ptr(self.jac), 0)
        self._address = ctypes.addressof(self._index)
        self._lib = lib
        self._estimate = lib.llknn_estimate
        self.d, self.m = d, m
        self.nleaves, self.nblocks = nleaves, nblocks

    def estimate(self, qa: np.ndarray) -> np.ndarray | None:
        """J (m, d) at qa (d,), a new array; None when the fit needs the caller's
        fallback solve (Cholesky failed; :meth:`neighbours` are set)."""
        self.q[:] = qa
        if self._estimate(self._address):
            return None
        return self.jac.copy()

    def estimate_batch(self, qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(J (B, m, d), status (B,) int32: 0 ok, 1 fallback needed for that row)."""
        qa = np.ascontiguousarray(qa, dtype=np.float64)
        out = np.empty((qa.shape[0], self.m, self.d))
        status = np.zeros(qa.shape[0], dtype=np.int32)
        if qa.shape[0]:
            self._lib.llknn_estimate_batch(self._address, _ptr(qa), qa.shape[0], _ptr(out),
                                           _ptr(status))
        return out, status

    def neighbours(self, qa: np.ndarray | None = None) -> np.ndarray:
        """Rows (into the qa, x given) of the k nearest samples of qa (or of the last
        query when None), in no particular order."""
        if qa is not None:
            self.q[:] = qa
            self._lib.llknn_query(self._address)
        return self.perm[self.heap_i[:self._index.found]]
