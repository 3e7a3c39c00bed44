"""The dataset recipes shipped with turbsim (TOML files; read with importlib.resources).

A package only so that the recipes travel inside the wheel: ``turbsim.recipe`` finds them with
``importlib.resources.files("data_manifests")`` in a source checkout and an installed wheel alike.
"""
