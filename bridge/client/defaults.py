"""Defaults shared by the client and its settings (no imports: both import it)."""

DEFAULT_ADDRESS = "127.0.0.1:50151"
