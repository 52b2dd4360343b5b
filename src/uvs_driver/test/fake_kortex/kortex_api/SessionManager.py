"""FAKE kortex_api.SessionManager (tests only)."""

from kortex_api import _fake


class SessionManager:
    def __init__(self, router) -> None:
        self.router = router

    def CreateSession(self, info) -> None:
        _fake.ARM.call("SessionManager.CreateSession",
                       transport=type(self.router.transport).__name__,
                       username=info.username, password=info.password,
                       session_inactivity_timeout=info.session_inactivity_timeout,
                       connection_inactivity_timeout=info.connection_inactivity_timeout)

    def CloseSession(self, options=None) -> None:
        _fake.ARM.call("SessionManager.CloseSession",
                       transport=type(self.router.transport).__name__,
                       timeout_ms=None if options is None else options.timeout_ms)
