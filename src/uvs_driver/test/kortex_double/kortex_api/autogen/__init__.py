"""DOUBLE kortex_api.autogen (tests only)."""
