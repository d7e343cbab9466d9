"""The OpenAI-compatible HTTP server in front of the gateway (``contentmill serve``; docs/server.md)."""
