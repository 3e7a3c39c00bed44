"""``import turbsim`` alone reaches the public submodules and TurbulenceParams (__init__.py)."""

from __future__ import annotations

import subprocess
import sys


def test_bare_import_reaches_the_submodules() -> None:
    code = (
        "import turbsim\n"
        "p = turbsim.TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)\n"
        "print(round(turbsim.theory.sigma_r_px(p), 3), turbsim.field.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5.597", "turbsim.field"]
