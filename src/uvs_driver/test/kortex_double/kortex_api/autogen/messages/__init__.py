"""DOUBLE kortex_api.autogen.messages (tests only)."""
