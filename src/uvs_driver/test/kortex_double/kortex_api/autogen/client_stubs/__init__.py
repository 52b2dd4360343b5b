"""DOUBLE kortex_api.autogen.client_stubs (tests only)."""
