"""DOUBLE (tests only): what every client stub method does, as Kinova's generated stubs
do: send the request through the router with the caller's ``options``, then wait for
the answer at most ``options.getTimeoutInSecond()`` (concurrent.futures.TimeoutError
after that; KServerException when the arm refuses). The double also checks the request
type, which the real stub leaves to serialisation."""

from __future__ import annotations


class Stub:
    SERVICE = ""

    def __init__(self, router) -> None:
        self.router = router

    def _call(self, method: str, request, request_type, deviceId, options):
        if request_type is not None and not isinstance(request, request_type):
            raise TypeError(f"{self.SERVICE}.{method} takes a {request_type.__name__}, "
                            f"got {type(request).__name__}")
        future = self.router.send(request, 1, f"{self.SERVICE}.{method}", deviceId, options)
        return future.result(options.getTimeoutInSecond()).payload
