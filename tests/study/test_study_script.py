"""`docs/study.sh` (regenerates docs/study/) run tiny end to end, its benchmark recipe, and the
follow-up studies under docs/ (study-harm; on the first benchmark study-tilt, study-harm-v1,
study-thin)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from study_helpers import TINY as STUDY_TINY

from feedbackseg.study.study_file import load_study
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources import street
from turbsim.sources.synthetic import scene_rng

REPO = Path(__file__).resolve().parents[2]

#: The two-cell study of test_study plus a restoration cell (the recipe stores the flow).
TINY = STUDY_TINY + '[cells.restore-seg]\nmode = "restore-seg"\n'


def test_benchmark_recipes_are_bmvc2020_air_with_blur_and_flow() -> None:
    """synthetic-benchmark is the BMVC 2020 camera and path at 1.5x its Cn2; its first version
    (kept for the studies made with it) is the BMVC 2020 air exactly; both blur and store the flow
    at 128x256, and the sampling seed is shared, so only the Cn2 separates their shards."""
    names = ("synthetic-benchmark", "synthetic-benchmark-v1", "bmvc2020")
    bench, first, paper = (resolve_recipe(name) for name in names)
    physics = ("cn2", "path_length_m", "aperture_m", "focal_length_px", "height_m", "wave")

    def air(recipe, cn2_scale: float = 1.0) -> dict:
        values = {k: recipe.data["physics"][k] for k in physics}
        return {**values, "cn2": values["cn2"] * cn2_scale}

    for recipe in (bench, first):
        assert recipe.size == (128, 256) and recipe.blur == "short-exposure"
        assert recipe.store_flow == "float16" and recipe.data["normalize"] == "per-field"
        assert recipe.data["seed"] == bench.data["seed"]
    assert air(first) == air(paper)
    assert air(bench) == air(paper, cn2_scale=1.5)
    labels = ("name", "description", "physics")
    assert {k: v for k, v in bench.data.items() if k not in labels} == {
        k: v for k, v in first.data.items() if k not in labels
    }


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_study_script_end_to_end_tiny(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    docs = tmp_path / "docs"
    # STUDY_RECIPE: the follow-up studies regenerate on the first version of the benchmark.
    env.update(STUDY_FILE=str(spec), STUDY_IMAGES="3", STUDY_DOCS=str(docs), OMP_NUM_THREADS="1",
               STUDY_RECIPE="synthetic-benchmark-v1")  # fmt: skip
    work = tmp_path / "work"
    done = subprocess.run(["bash", str(REPO / "docs" / "study.sh"), str(work)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    recipe = json.loads((work / "shards" / "manifest.json").read_text())["recipe"]
    assert recipe["name"] == "synthetic-benchmark-v1" and recipe["physics"]["cn2"] == 1e-12
    # Every run trained exactly once, by one of the two lanes, the costliest first.
    lines = [x for x in done.stdout.splitlines() if x.startswith("  [lane ")]
    runs = sorted(x.split()[2] for x in lines)
    assert runs == sorted(f"{c}:{s}" for c in ("erfnet-clean", "erfnet", "restore-seg")
                          for s in (0, 1))  # fmt: skip
    assert {x.split()[1] for x in lines} == {"1]", "2]"}
    assert sorted(p.name for p in (work / "claims").iterdir()) == sorted(
        r.replace(":", "-") for r in runs
    )
    results = json.loads((docs / "results.json").read_text())
    assert set(results["cells"]) == {"erfnet-clean", "erfnet", "restore-seg"}
    assert results["resolution"] == "32x64" and results["steps"] == 2
    assert json.loads((work / "study" / "results.json").read_text()) == results
    for name in ("results.md", "study.png", "curves.png"):
        assert (docs / name).is_file(), name
    assert "flow_epe_zero_px" in results["cells"]["restore-seg"]  # the recipe stores the flow
    # Run again: everything is found finished, nothing retrained, the same results.
    again = subprocess.run(["bash", str(REPO / "docs" / "study.sh"), str(work)], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 run(s) trained, 6 found finished" in again.stdout
    assert json.loads((docs / "results.json").read_text()) == results


def test_thin_scene_patch_applies_and_does_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/study-thin/scenes.patch (the scenes of that folder's study) still applies to the
    shipped scenes, and the patched scenes hold more pole and fence pixels (README there)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in ("turbsim/sources/street.py", "tests/test_synthetic.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    patch = REPO / "docs" / "study-thin" / "scenes.patch"
    done = subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()

    spec = importlib.util.spec_from_file_location(
        "street_thin", tmp_path / "turbsim/sources/street.py"
    )
    assert spec is not None and spec.loader is not None
    thin = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "street_thin", thin)  # dataclasses look their module up
    spec.loader.exec_module(thin)

    def share(module, label: str) -> float:
        ids = [module.make_scene(scene_rng(0, "train", i), 64, 128)[1] for i in range(12)]
        return float(np.mean([(x == street.SCENE_LABEL_IDS[label]).mean() for x in ids]))

    assert share(thin, "pole") > 1.5 * share(street, "pole")
    assert share(thin, "fence") > share(street, "fence")


@pytest.mark.parametrize("folder", ["study-tilt", "study-harm", "study-harm-v1"])
def test_follow_up_studies_are_cells_of_the_cpu_grid(folder: str) -> None:
    """The follow-up study files under docs/ say "everything else as the shipped cpu study":
    each of their cells is a cell of the CPU grid with exactly the same training values."""
    cpu = load_study("cpu")
    follow_up = load_study(str(REPO / "docs" / folder / "study.toml"))
    assert follow_up.cells and set(follow_up.cells) <= set(cpu.cells)
    for name, cell in follow_up.cells.items():
        assert cell.values == cpu.cells[name].values, name
    assert set(cpu.seeds) <= set(follow_up.seeds)
