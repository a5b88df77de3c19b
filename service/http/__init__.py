"""The HTTP face of the service: the app factory, its routes, request parsing, the error envelope and the server."""
