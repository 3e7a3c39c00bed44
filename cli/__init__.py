"""Command-line interfaces: ``turbsim`` (simulator) and ``fbseg`` (models).

Thin click commands only: each parses its flags, builds a config, calls the library and reports.
No logic lives here. The folder installs as the package ``turbsim_cli`` (pyproject.toml), a
name no other project uses; import it by that name. Shared flags and parameter types are in
:mod:`turbsim_cli.options`.
"""
