"""FAKE kortex_api.autogen.messages.Base_pb2 (tests only): the messages and enums
Gen3Backend uses, with the documented field names."""

from kortex_api.autogen.messages._repeated import Message, Repeated

# ServoingMode
UNSPECIFIED_SERVOING_MODE = 0
SINGLE_LEVEL_SERVOING = 2
LOW_LEVEL_SERVOING = 3
BYPASS_SERVOING = 4

# ActionType
REACH_POSE = 6
REACH_JOINT_ANGLES = 7

# ActionEvent
UNSPECIFIED_ACTION_EVENT = 0
ACTION_END = 1
ACTION_ABORT = 2
ACTION_PAUSE = 3
ACTION_START = 4


class ActionEvent:
    _names = {0: "UNSPECIFIED_ACTION_EVENT", 1: "ACTION_END", 2: "ACTION_ABORT",
              3: "ACTION_PAUSE", 4: "ACTION_START"}

    @classmethod
    def Name(cls, value: int) -> str:
        return cls._names[value]


class ServoingModeInformation(Message):
    _fields = {"servoing_mode": UNSPECIFIED_SERVOING_MODE}


class JointSpeed(Message):
    _fields = {"joint_identifier": 0, "value": 0.0, "duration": 0}


class JointSpeeds(Message):
    _fields = {"joint_speeds": lambda: Repeated(JointSpeed), "duration": 0}


class RequestedActionType(Message):
    _fields = {"action_type": 0}


class ActionHandle(Message):
    _fields = {"identifier": 0, "action_type": 0, "permission": 0}


class Action(Message):
    _fields = {"name": "", "handle": ActionHandle}


class ActionList(Message):
    _fields = {"action_list": lambda: Repeated(Action)}


class NotificationOptions(Message):
    _fields = {"type": 0, "rate_m_sec": 0, "threshold_value": 0.0}


class NotificationHandle(Message):
    _fields = {"identifier": 0}


class ActionNotification(Message):
    _fields = {"action_event": UNSPECIFIED_ACTION_EVENT, "handle": ActionHandle}
