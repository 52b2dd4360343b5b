"""A protobuf-like repeated message field for the fake messages (tests only)."""


class Repeated(list):
    """list with protobuf's ``add()``: append a new element and return it."""

    def __init__(self, element_type) -> None:
        super().__init__()
        self._element_type = element_type

    def add(self, **fields):
        element = self._element_type(**fields)
        self.append(element)
        return element


class Message:
    """Fields from keyword arguments, like protobuf constructors; defaults from ``_fields``."""

    _fields: dict = {}

    def __init__(self, **fields) -> None:
        for name, default in self._fields.items():
            setattr(self, name, default() if callable(default) else default)
        for name, value in fields.items():
            if name not in self._fields:
                raise AttributeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)
