"""Subcommands of the ``unirep`` console script, one module each; every module exposes ``add_parser``."""
