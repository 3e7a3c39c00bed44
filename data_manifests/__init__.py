"""The dataset recipes shipped with turbsim (TOML files; read with importlib.resources).

A package only so that the recipes travel inside the wheel. It installs as
``turbsim_data_manifests`` (pyproject.toml maps the folder to that name, editable installs
included): ``turbsim.pipeline.recipe`` finds the recipes with
``importlib.resources.files("turbsim_data_manifests")``.
"""
