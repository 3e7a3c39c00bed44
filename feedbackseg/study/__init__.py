"""``fbseg study``: the study file (cells x seeds), the runner, what it records per run, and the
report (``results.json``, ``results.md``, ``study.png``). Shipped studies: ``studies/*.toml``.
"""
