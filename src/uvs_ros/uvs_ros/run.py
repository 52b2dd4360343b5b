"""main() of every uvs node: build it, spin it, and shut it down cleanly on any signal.

rclpy's own signal handler shuts the context down from a signal thread while a
callback may still be publishing, and a second SIGINT (a double Ctrl-C, `ros2 launch`
forwarding the terminal's SIGINT, `timeout` signalling the process group) then lands
as a KeyboardInterrupt in the middle of destroy_node(). Both end in tracebacks, and
the first can come before the driver has stopped the arm. Here the process keeps its
context until the node has had its last word:

1. SIGINT and SIGTERM only set a flag (every later one too: repeats are harmless);
2. the executor spins on a thread of its own, the main thread waits for the flag, for
   the node to finish its job, or for the executor to fail;
3. then the executor stops after the callback in progress, and with the context still
   valid the node's ``on_shutdown()`` runs (the driver commands zero and publishes its
   last state: no tick can follow it), then the node is destroyed and rclpy shut down.

Works on Jazzy and Kilted (``SignalHandlerOptions`` exists in both).
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

__all__ = ["SHUTDOWN_SIGNALS", "run_node"]

#: the signals that end a node cleanly; launch sends SIGINT, then SIGTERM after 5 s
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# s between checks of the node's `finished` event and of the executor thread
_POLL = 0.05
# s to wait for the callback in progress and for the executor thread at shutdown
_STOP_TIMEOUT = 3.0


def run_node(make_node: Callable[[], Node], name: str, *, args: list[str] | None = None,
             make_executor: Callable[[Node], Executor] | None = None,
             fatal: tuple[type[BaseException], ...] = (ValueError,)) -> int:
    """Run one node as a process's main(); return its exit code.

    make_node: builds the node after ``rclpy.init``. An exception of a ``fatal`` type
        (bad parameters, an unreachable arm), raised there or in a callback, is logged
        as one FATAL line under ``name`` and gives exit code 1, without a traceback.
    make_executor: ``node -> Executor`` (default: a SingleThreadedExecutor).
    The node may define:
        ``finished``: a threading.Event it sets when its job is done (the babbler);
        ``exit_code``: the exit code it then wants (default 0);
        ``on_shutdown()``: called once at the end, after the executor has stopped (no
        callback runs any more) while the context is still valid, so what it publishes
        is the node's last message; it must not raise for expected failures.
    Exit codes: 0 after a signal or a finished job, 1 after a fatal error or an
    unexpected exception in a callback (logged with its traceback).
    On return SIGINT and SIGTERM are ignored: call it once, as a process's main().
    """
    # The handler only appends: it runs between two bytecodes of the main thread, which
    # may then hold a lock (an Event's, say) that the handler would wait for forever.
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)

    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, on_signal)
    logger = rclpy.logging.get_logger(name)
    node = executor = spin_thread = None
    failures: list[BaseException] = []
    code = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = make_node()
        except fatal as exc:
            logger.fatal(str(exc))
            return 1
        if received:
            return 0
        executor = (make_executor or (lambda _node: SingleThreadedExecutor()))(node)
        executor.add_node(node)
        spin_thread = threading.Thread(target=_spin, args=(executor, failures),
                                       name=f"{name}-executor", daemon=True)
        spin_thread.start()
        finished = getattr(node, "finished", None)
        while not received:
            if not spin_thread.is_alive() or (finished is not None and finished.is_set()):
                break
            time.sleep(_POLL)
        if received:
            logger.info(f"{signal.Signals(received[0]).name}: shutting down")
        for exc in failures:
            if isinstance(exc, fatal):
                logger.fatal(str(exc))
            else:
                logger.fatal("unexpected error in a callback:\n" + "".join(
                    traceback.format_exception(exc)))
            code = 1
        if not failures and finished is not None and finished.is_set():
            code = int(getattr(node, "exit_code", 0))
        return code
    finally:
        try:
            if executor is not None:
                executor.shutdown(timeout_sec=_STOP_TIMEOUT)
            if spin_thread is not None:
                spin_thread.join(timeout=_STOP_TIMEOUT)
            if node is not None and rclpy.ok():
                hook = getattr(node, "on_shutdown", None)
                if hook is not None:
                    hook()
        finally:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
            # This is the process's main() and it is about to return. A signal still on
            # its way (the launch forwards the terminal's Ctrl-C) must neither surface as
            # a KeyboardInterrupt nor, once the interpreter has reset Python handlers to
            # the default at exit, kill the process (exit code -2): ignore them from now.
            for sig in SHUTDOWN_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)


def _spin(executor: Executor, failures: list[BaseException]) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass
    except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
        failures.append(exc)
