"""The HTTP service: settings, gateway, batching, workers, metrics and the ``unirep`` command line."""
