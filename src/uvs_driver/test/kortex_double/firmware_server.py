"""The Kortex double's firmware as a server (tests and benchmarks only; see README.md).

A real Gen3 is a server on the network: every client process (the driver, its
supervisor, Kinova's Web App) opens TCP/UDP connections to it, and each connection
carries a session (transport + RouterClient + SessionManager in Kinova's examples).
So that two processes can reach the double's arm, the arm (``gen3_double.current()``)
answers over local TCP sockets: ``FirmwareServer`` listens on 127.0.0.1 and, for every
client transport, calls the arm as the arm's own network stack would; the double's
``kortex_api`` transports connect to it at ``KORTEX_DOUBLE_ADDRESS`` (``host:port``).

Wire format (this module's ``send`` / ``receive``): a 4-byte big-endian length, then a
pickle. The double's messages are plain Python objects, pickled as such (the real API
sends protobuf bytes; bytes on the wire are not mimicked). Client to server:
``("connect", seq, kind, ip, port, pid)``, ``("frame", seq, RequestFrame)``,
``("disconnect", seq)``; server to client: ``("done", seq, exception or None)`` for each
of those (the transport-level outcome: a refused connect, a broken pipe), then, from
the arm, ``("reply", frame_id, payload, error)`` (error: ``(code, sub_code, text)``) and
``("notify", handle_id, notification)``, whenever the arm sends them (late, or never,
under fault injection). Pickle trusts its peer: the server listens on 127.0.0.1 only
and serves tests.

Run as a program, it is the arm of ``benchmarks/faults.py``: it prints
``{"address": "127.0.0.1:port"}`` on stdout, then answers fault-injection requests, one
JSON object a line on stdin (``{"id": k, "op": ..., ...}``), one JSON answer a line on
stdout (``{"id": k, "result": ...}`` or ``{"id": k, "error": "..."}``), until stdin
closes. Operations (``gen3_double.Gen3Double``): ``ping``; ``hang`` (name,
reply_after); ``drop`` (name, count); ``break`` (kind); ``fault`` (sub); ``clear`` (the
injections); ``stop_reached`` (since: monotonic s -> s or null); ``events`` (since ->
[[t, what, detail], ...]); ``moving`` (-> bool); ``positions`` (-> deg); ``stops``
(since -> [[t, pid], ...] of executed Base.Stop); ``peers`` (-> [[pid, kind, closed],
...] of the connections).

    python src/uvs_driver/test/kortex_double/firmware_server.py [--dof 7]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import struct
import sys
import threading
from pathlib import Path

_HEADER = struct.Struct(">I")
ADDRESS_ENV = "KORTEX_DOUBLE_ADDRESS"


def send(sock: socket.socket, message) -> None:
    """Write one message (any picklable object) to ``sock``."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket):
    """One message from ``sock``; raises EOFError when the peer closed it."""
    header = _exactly(sock, _HEADER.size)
    if header is None:
        raise EOFError("peer closed the connection")
    data = _exactly(sock, _HEADER.unpack(header)[0])
    if data is None:
        raise EOFError("peer closed the connection")
    return pickle.loads(data)


class _Peer:
    """The arm's side of one client transport: what ``Gen3Double`` calls
    ``conn.transport`` (``deliver`` a reply, ``notify`` a notification)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self.gone = False

    def write(self, message) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                send(self.sock, message)
            except OSError:
                self.gone = True     # the client process is gone: nothing reaches it

    def deliver(self, reply) -> None:
        error = None if reply.error is None else (reply.error.code, reply.error.sub_code,
                                                  reply.error.text)
        self.write(("reply", reply.frame_id, reply.payload, error))

    def notify(self, handle_id: int, notification) -> None:
        self.write(("notify", handle_id, notification))


class FirmwareServer:
    """Serves ``gen3_double.current()`` (looked up at each new connection, so a test's
    ``reset()`` applies) on ``127.0.0.1:port`` (0: any free port). ``address`` is
    ``"host:port"``; ``close()`` stops listening and drops every client."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))
        host, port = self._listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="kortex-double-server")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return       # closed
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._clients.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="kortex-double-client").start()

    def _serve(self, sock: socket.socket) -> None:
        import gen3_double

        peer = _Peer(sock)
        arm = conn = None
        try:
            while True:
                message = receive(sock)
                op, seq = message[0], message[1]
                error = None
                if op == "connect":
                    _, _, kind, ip, port, pid = message
                    try:
                        arm = gen3_double.current()
                        conn = arm.connect(peer, kind, ip, port, pid=pid)
                    except OSError as exc:
                        error = exc
                elif op == "frame":
                    try:
                        arm.receive(conn, message[2])
                    except OSError as exc:       # BrokenPipeError, EBADF
                        error = exc
                elif op == "disconnect":
                    try:
                        arm.disconnect(conn)
                    except OSError as exc:
                        error = exc
                else:
                    error = ValueError(f"unknown request {op!r}")
                peer.write(("done", seq, error))
        except (EOFError, OSError):
            pass     # the client is gone; its connection stays open on the arm's side
        finally:
            peer.gone = True
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=2.0)


def serve(port: int = 0) -> FirmwareServer:
    """Start serving the double's arm; set ``KORTEX_DOUBLE_ADDRESS`` to its ``address``
    in every process that should reach it."""
    return FirmwareServer(port)


# ------------------------------------------------------------------ the benchmark's arm

def _plain(detail):
    if hasattr(detail, "tolist"):
        return detail.tolist()
    return detail if detail is None or isinstance(detail, (str, int, float)) else str(detail)


def _answer(arm, request: dict):
    op = request["op"]
    if op == "ping":
        return True
    if op == "hang":
        arm.hang(request["name"], request.get("reply_after"))
    elif op == "drop":
        arm.drop(request["name"], int(request["count"]))
    elif op == "break":
        arm.break_connection(request.get("kind", "TCP"))
    elif op == "fault":
        arm.inject_fault(request.get("sub", "SAFETY_THRESHOLD_REACHED"))
    elif op == "clear":
        arm.clear_injections()
    elif op == "stop_reached":
        return arm.stop_reached(float(request["since"]))
    elif op == "events":
        since = float(request["since"])
        arm.positions()      # integrate up to now: events of motion ending meanwhile
        with arm.lock:
            return [[t, what, _plain(detail)] for t, what, detail in arm.events if t >= since]
    elif op == "moving":
        return arm.moving()
    elif op == "positions":
        return arm.positions().tolist()
    elif op == "stops":
        since = float(request["since"])
        return [[e.t, e.pid] for e in arm.entries("Base.Stop", "ok") if e.t >= since]
    elif op == "peers":
        with arm.lock:
            return [[c.pid, c.kind, c.closed] for c in arm.connections]
    else:
        raise ValueError(f"unknown op {op!r}")
    return None


def control(stdin, stdout, gen3_double) -> None:
    """Answer fault-injection requests from ``stdin`` until it closes."""
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = {"id": request.get("id"), "result": _answer(gen3_double.current(), request)}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The Kortex double's arm as a server.")
    parser.add_argument("--dof", type=int, default=7, choices=(6, 7))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gen3_double

    gen3_double.reset(args.dof)
    server = serve(args.port)
    sys.stdout.write(json.dumps({"address": server.address, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        control(sys.stdin, sys.stdout, gen3_double)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
