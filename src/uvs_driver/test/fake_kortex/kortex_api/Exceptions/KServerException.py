"""FAKE kortex_api.Exceptions.KServerException (tests only)."""


class KServerException(Exception):
    """The arm answered a call with an error (error code, sub code)."""

    def __init__(self, error_code: int = 1, error_sub_code: int = 0, message: str = "") -> None:
        super().__init__(f"server error {error_code}/{error_sub_code}: {message}")
        self._code, self._sub = error_code, error_sub_code

    def get_error_code(self) -> int:
        return self._code

    def get_error_sub_code(self) -> int:
        return self._sub
