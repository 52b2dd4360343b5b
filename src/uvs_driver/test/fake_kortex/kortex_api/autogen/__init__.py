"""FAKE kortex_api.autogen (tests only)."""
