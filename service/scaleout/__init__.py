"""Serving past one process through Redis: the connection, the shared cache, API keys, and the Streams transport."""
