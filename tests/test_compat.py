"""Public names that worked before the restructuring (issue 10) keep working."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_bare_import_reaches_the_submodules() -> None:
    code = (
        "import turbsim\n"
        "p = turbsim.TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)\n"
        "print(round(turbsim.theory.sigma_r_px(p), 3), turbsim.field.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5.597", "turbsim.field"]


def test_old_helper_names_and_signatures() -> None:
    from turbsim import theory
    from turbsim.cityscapes import stable_stem_hash
    from turbsim.generate import configure_worker
    from turbsim.seeding import stable_hash
    from turbsim.table_cache import cache_dir

    assert stable_stem_hash(stem="aachen_000000_000019") == stable_hash("aachen_000000_000019")
    assert theory.cache_dir is cache_dir
    configure_worker(1, None)  # the old (threads, progress_queue) form


def test_feedbackseg_constant_aliases() -> None:
    pytest.importorskip("torch")
    import feedbackseg.train as train

    assert train.IGNORE_INDEX == 255 and train.EVAL_CLASSES == 19


def test_blur_padding_is_bounded_for_absurd_apertures() -> None:
    """Review finding: the padding grew with the PSF without bound (D = 1e-5 m: 89,623 px)."""
    from dataclasses import replace

    from turbsim import blur
    from turbsim.params import REFERENCE_PARAMS

    tiny = replace(REFERENCE_PARAMS, aperture_m=1e-5)
    assert blur.padding_px(tiny) > 10_000
    image = np.full((24, 40, 3), 90, np.uint8)
    np.testing.assert_array_equal(blur.blur_image(image, tiny), image)
