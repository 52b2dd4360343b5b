"""Clean-up at the end of a node's main() that a late Ctrl-C cannot cut short."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigint_deferred():
    """Ignore SIGINT inside the block (main thread only; elsewhere a no-op).

    rclpy's signal handler shuts the context down and spin() may return
    before Python raises the KeyboardInterrupt of the same Ctrl-C; it then
    surfaces in the clean-up, half-way through stopping the arm or closing its
    Kortex session. Ignoring SIGINT here also discards that pending one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
