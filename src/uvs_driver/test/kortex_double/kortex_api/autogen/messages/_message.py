"""DOUBLE (tests only): strict protobuf-like messages for the Kortex double.

Python protobuf refuses what the double's callers could get wrong, so these do too:

- assigning a field the message does not have raises AttributeError
  (``Assignment not allowed (no field "x" in protocol message object).``);
- assigning a composite or repeated field raises AttributeError (protobuf only lets
  you mutate them: ``msg.sub.field = v``, ``msg.items.add()``);
- a scalar of the wrong type raises TypeError (a float in an integer field, a str in a
  number field, a number in a string field), an integer out of range ValueError;
- ``float`` fields hold 32-bit floats, as on the wire (0.1 reads back 0.10000000149...).

Enum fields are open (proto3): any int32 is accepted, as protobuf does.
"""

from __future__ import annotations

import numbers
import struct

__all__ = ["EnumType", "Field", "Message", "RepeatedComposite", "RepeatedScalar"]

_INT_RANGES = {
    "int32": (-(2 ** 31), 2 ** 31 - 1),
    "uint32": (0, 2 ** 32 - 1),
    "int64": (-(2 ** 63), 2 ** 63 - 1),
    "uint64": (0, 2 ** 64 - 1),
    "enum": (-(2 ** 31), 2 ** 31 - 1),
}


class EnumType:
    """A protobuf enum wrapper: ``Name(value)``, ``Value(name)``, ``keys()``, ``values()``."""

    def __init__(self, name: str, members: dict[str, int]) -> None:
        self._name = name
        self._by_name = dict(members)
        self._by_value = {v: k for k, v in members.items()}

    def Name(self, value: int) -> str:
        try:
            return self._by_value[value]
        except KeyError:
            raise ValueError(f"Enum {self._name} has no name defined for value {value!r}") from None

    def Value(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"Enum {self._name} has no value defined for name {name!r}") from None

    def keys(self) -> list[str]:
        return list(self._by_name)

    def values(self) -> list[int]:
        return list(self._by_name.values())

    def items(self) -> list[tuple[str, int]]:
        return list(self._by_name.items())


class Field:
    """One field: ``kind`` is a scalar type name ("float", "double", "int32", "uint32",
    "int64", "uint64", "bool", "string", "bytes", "enum") or a Message subclass."""

    def __init__(self, kind, repeated: bool = False) -> None:
        self.kind = kind
        self.repeated = repeated

    @property
    def composite(self) -> bool:
        return isinstance(self.kind, type)

    def default(self):
        if self.repeated:
            return (RepeatedComposite(self.kind) if self.composite
                    else RepeatedScalar(self.kind))
        if self.composite:
            return self.kind()
        return {"string": "", "bytes": b"", "bool": False, "float": 0.0,
                "double": 0.0}.get(self.kind, 0)


def _check_scalar(kind: str, value, where: str):
    """The value protobuf would store for ``value`` in a field of ``kind``, or raise."""
    if kind in ("float", "double"):
        if isinstance(value, str | bytes) or not isinstance(value, numbers.Real):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: "
                            f"int, float ({where})")
        value = float(value)
        if kind == "float":
            value = struct.unpack("<f", struct.pack("<f", value))[0]
        return value
    if kind in _INT_RANGES:
        if isinstance(value, float) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: "
                            f"int ({where})")
        low, high = _INT_RANGES[kind]
        if not low <= int(value) <= high:
            raise ValueError(f"Value out of range: {value} ({where})")
        return int(value)
    if kind == "bool":
        if isinstance(value, float) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: "
                            f"int, bool ({where})")
        return bool(value)
    if kind == "string":
        if not isinstance(value, str):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: "
                            f"str ({where})")
        return value
    if kind == "bytes":
        if not isinstance(value, bytes):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: "
                            f"bytes ({where})")
        return value
    raise AssertionError(f"unknown field kind {kind!r}")


class _Repeated:
    """What both repeated fields share: a list behind extend, len, iteration (over a
    copy), indexing, deletion and equality, as protobuf's repeated containers."""

    def __init__(self) -> None:
        self._items: list = []

    def append(self, value) -> None:
        raise NotImplementedError

    def extend(self, values) -> None:
        for value in values:
            self.append(value)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def __getitem__(self, index):
        return self._items[index]

    def __delitem__(self, index) -> None:
        del self._items[index]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._items)


class RepeatedScalar(_Repeated):
    """A repeated scalar field: append, extend, index, iterate, delete slices."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self._kind = kind

    def append(self, value) -> None:
        self._items.append(_check_scalar(self._kind, value, "repeated field"))


class RepeatedComposite(_Repeated):
    """A repeated message field: ``add(**fields)`` appends and returns a new element."""

    def __init__(self, message_type: type) -> None:
        super().__init__()
        self._type = message_type

    def add(self, **fields):
        element = self._type(**fields)
        self._items.append(element)
        return element

    def append(self, message) -> None:
        if not isinstance(message, self._type):
            raise TypeError(f"expected {self._type.__name__}, got {type(message).__name__}")
        self._items.append(message._copy())


class Message:
    """Base of the double's messages; subclasses declare ``FIELDS = {name: Field}``."""

    FIELDS: dict[str, Field] = {}

    def __init__(self, **fields) -> None:
        for name, field in self.FIELDS.items():
            object.__setattr__(self, name, field.default())
        for name, value in fields.items():
            field = self._field(name, "Protocol message {cls} has no \"{name}\" field.",
                                ValueError)
            if field.repeated:
                getattr(self, name).extend(value)
            elif field.composite:
                getattr(self, name).CopyFrom(value if isinstance(value, field.kind)
                                             else field.kind(**value))
            else:
                setattr(self, name, value)

    def _field(self, name: str, message: str, error=AttributeError) -> Field:
        try:
            return self.FIELDS[name]
        except KeyError:
            raise error(message.format(cls=type(self).__name__, name=name)) from None

    def __setattr__(self, name: str, value) -> None:
        field = self._field(name, 'Assignment not allowed (no field "{name}" in protocol '
                                  "message object).")
        if field.repeated or field.composite:
            raise AttributeError(f'Assignment not allowed to field "{name}" in protocol '
                                 "message object.")
        object.__setattr__(self, name, _check_scalar(field.kind, value,
                                                     f"{type(self).__name__}.{name}"))

    def CopyFrom(self, other: Message) -> None:
        if type(other) is not type(self):
            raise TypeError(f"Parameter to CopyFrom() must be instance of same class: "
                            f"expected {type(self).__name__} got {type(other).__name__}.")
        for name, field in self.FIELDS.items():
            value = getattr(other, name)
            if field.repeated:
                mine = getattr(self, name)
                del mine[:]
                if field.composite:
                    mine.extend(value)
                else:
                    mine.extend(list(value))
            elif field.composite:
                getattr(self, name).CopyFrom(value)
            else:
                object.__setattr__(self, name, value)

    def _copy(self) -> Message:
        """A deep copy, as serialising and parsing would give."""
        copy = type(self)()
        copy.CopyFrom(self)
        return copy

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({parts})"
