"""DOUBLE kortex_api.autogen.messages.Session_pb2 (tests only)."""

from kortex_api.autogen.messages._message import Field, Message


class CreateSessionInfo(Message):
    FIELDS = {"username": Field("string"), "password": Field("string"),
              "session_inactivity_timeout": Field("uint32"),
              "connection_inactivity_timeout": Field("uint32")}
