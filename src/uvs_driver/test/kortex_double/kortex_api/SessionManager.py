"""DOUBLE kortex_api.SessionManager (tests only).

As Kinova's: ``CreateSession`` starts a daemon thread that sends ``KeepAlive`` (timeout
120 ms) whenever nothing was sent for 150 ms, and calls ``connectionTimeoutCallback``
when nothing was received for the session inactivity timeout. So while the process
lives, the session stays open even if the program that owns it is stuck. ``CloseSession``
stops the thread, then closes the session and swallows its errors (prints them), as the
real one does. Where the real thread would die with a traceback on a broken socket, the
double's ends quietly.
"""

from __future__ import annotations

import sys
import threading
import time

from kortex_api.autogen.client_stubs.SessionClientRpc import SessionClient
from kortex_api.Exceptions.KException import KException
from kortex_api.RouterClient import (
    MSG_FRAME_REQUEST,
    MSG_FRAME_RESPONSE,
    RouterClientSendOptions,
)


def DropConnectionTimeoutCallback() -> None:
    print(f"[SessionManager] Connection timeout detected ({time.time()})", file=sys.stderr)


class SessionManager(SessionClient):
    def __init__(self, router, connectionTimeoutCallback=DropConnectionTimeoutCallback) -> None:
        super().__init__(router)
        router.registerHitCallback(self.Hit)
        self.m_connectionTimeoutCallback = connectionTimeoutCallback
        self.m_keepAliveInterval_ms = 150
        self.m_inactivityTimeout_ms = 0
        self.m_hasBeenSent = False
        self.m_hasBeenReceived = False
        self.event = threading.Event()
        self.m_thread = threading.Thread(target=self._keep_alive, daemon=True,
                                         name="kortex-keepalive")

    def CreateSession(self, createSessionInfo, options=None):
        options = options if options is not None else RouterClientSendOptions()
        super().CreateSession(createSessionInfo, options=options)
        self.m_inactivityTimeout_ms = createSessionInfo.session_inactivity_timeout
        self.m_thread.start()

    def CloseSession(self, options=None):
        options = options if options is not None else RouterClientSendOptions()
        self.router.m_hitCallback = None
        self.event.set()
        time.sleep(0.010)
        try:
            super().CloseSession(options=options)
        except TimeoutError:
            pass
        except Exception as ex:  # noqa: BLE001 - the real one prints and swallows
            print(f"[SessionManager.CloseSession] super().CloseSession() failed with: {ex}",
                  file=sys.stderr)

    def Hit(self, hit_type) -> None:
        if hit_type == MSG_FRAME_RESPONSE:
            self.m_hasBeenReceived = True
        elif hit_type == MSG_FRAME_REQUEST:
            self.m_hasBeenSent = True

    def _keep_alive(self) -> None:
        last_rx = last_tx = time.time()
        options = RouterClientSendOptions()
        options.timeout_ms = int(self.m_keepAliveInterval_ms * 0.8)
        interval = self.m_keepAliveInterval_ms / 1000
        inactivity = self.m_inactivityTimeout_ms / 1000
        while not self.event.is_set():
            now = time.time()
            if not self.m_hasBeenSent and now - last_tx > interval:
                last_tx = time.time()
                try:
                    self.KeepAlive(options=options)
                except TimeoutError:
                    pass
                except (OSError, KException):
                    return          # the real thread dies here with a traceback
            elif self.m_hasBeenSent:
                last_tx = time.time()
                self.m_hasBeenSent = False
            if not self.m_hasBeenReceived and inactivity and now - last_rx > inactivity:
                last_rx = time.time()
                self.m_connectionTimeoutCallback()
            elif self.m_hasBeenReceived:
                last_rx = time.time()
                self.m_hasBeenReceived = False
            time.sleep(0.010)
