"""DOUBLE kortex_api.autogen.messages.Common_pb2 (tests only): ArmState (values of Kinova's
enm_Common_ArmState) and the notification messages."""

from kortex_api.autogen.messages._message import EnumType, Field, Message

ArmState = EnumType("ArmState", {
    "ARMSTATE_UNSPECIFIED": 0,
    "ARMSTATE_BASE_INITIALIZATION": 1,
    "ARMSTATE_IDLE": 2,
    "ARMSTATE_INITIALIZATION": 3,
    "ARMSTATE_IN_FAULT": 4,
    "ARMSTATE_MAINTENANCE": 5,
    "ARMSTATE_SERVOING_LOW_LEVEL": 6,
    "ARMSTATE_SERVOING_READY": 7,
    "ARMSTATE_SERVOING_PLAYING_SEQUENCE": 8,
    "ARMSTATE_SERVOING_MANUALLY_CONTROLLED": 9,
    "ARMSTATE_RESERVED": 255,
})
globals().update(ArmState.items())

NotificationType = EnumType("NotificationType", {
    "NOTIFICATION_TYPE_UNSPECIFIED": 0, "NOTIFICATION_TYPE_EVENT": 1,
    "NOTIFICATION_TYPE_TIME": 2, "NOTIFICATION_TYPE_SPURIOUS": 3,
    "NOTIFICATION_TYPE_THRESHOLD": 4})


class Empty(Message):
    FIELDS = {}


class NotificationHandle(Message):
    FIELDS = {"identifier": Field("uint32")}


class NotificationOptions(Message):
    FIELDS = {"type": Field("enum"), "rate_m_sec": Field("uint32"),
              "threshold_value": Field("float")}


class Timestamp(Message):
    FIELDS = {"sec": Field("uint32"), "usec": Field("uint32")}
