"""Command-line interfaces: ``turbsim`` (simulator) and ``fbseg`` (models).

Thin click commands only: each parses its flags, builds a config, calls the library and reports.
No logic lives here. Shared flags and parameter types are in :mod:`cli.options`.
"""
