"""DOUBLE kortex_api.Exceptions (tests only)."""
