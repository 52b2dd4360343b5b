"""FAKE kortex_api.autogen.messages.Session_pb2 (tests only)."""

from kortex_api.autogen.messages._repeated import Message


class CreateSessionInfo(Message):
    _fields = {"username": "", "password": "", "session_inactivity_timeout": 0,
               "connection_inactivity_timeout": 0}
