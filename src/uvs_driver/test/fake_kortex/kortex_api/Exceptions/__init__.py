"""FAKE kortex_api.Exceptions (tests only)."""
