"""Tests mirror the modules: every module of turbsim, feedbackseg and the CLI has a test file named
after it (``test_<module>.py``, or ``test_<room>_<module>.py``, anywhere under tests/), or
:data:`COVERED_BY` names the test file that covers it and what that file goes through (the
module itself, or the command or package that reaches it); that file must import or name it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: Repository folder -> the name its package is imported by.
IMPORT_NAMES = {"turbsim": "turbsim", "feedbackseg": "feedbackseg", "cli": "turbsim_cli"}

TURBSIM_CMD = "turbsim_cli.turbsim_cmd"
FBSEG_CMD = "turbsim_cli.fbseg_cmd"
#: Module (repository path) -> (test file under tests/, the module or entry point it goes through).
COVERED_BY: dict[str, tuple[str, str]] = {
    "turbsim/_aliases.py": ("test_init.py", "turbsim.field"),
    "turbsim/_files.py": ("test_fbseg_faults.py", "turbsim._files"),
    "turbsim/physics/choices.py": ("test_params.py", "turbsim.physics.choices"),
    "turbsim/physics/quantities.py": ("test_params.py", "turbsim.physics.quantities"),
    "turbsim/physics/table_cache.py": ("test_theory.py", "turbsim.physics.table_cache"),
    "turbsim/physics/threads.py": ("test_field.py", "turbsim.physics.field"),
    "turbsim/pipeline/executors.py": ("test_generate.py", TURBSIM_CMD),
    "turbsim/pipeline/outfolder.py": ("test_generate.py", "turbsim.pipeline.outfolder"),
    "turbsim/pipeline/plan.py": ("test_generate.py", "turbsim.pipeline.plan"),
    "turbsim/pipeline/render.py": ("test_generate.py", "turbsim.pipeline.render"),
    "turbsim/shards/schema.py": ("test_shards_folder.py", "turbsim.shards"),
    "turbsim/shards/sidecar.py": ("test_shards_manifest.py", "turbsim.shards.sidecar"),
    "turbsim/sources/jpeg.py": ("test_image_folder.py", "turbsim.sources.jpeg"),
    "turbsim/sources/label_map.py": ("test_image_folder.py", "turbsim.sources.label_map"),
    "turbsim/sources/street.py": ("test_synthetic.py", "turbsim.sources.synthetic"),
    "feedbackseg/data/cityscapes_labels.py": (
        "test_metrics.py",
        "feedbackseg.data.cityscapes_labels",
    ),
    "feedbackseg/data/workers.py": ("test_fbseg_faults.py", FBSEG_CMD),
    "feedbackseg/devices/memory.py": ("test_faults_round2_fbseg.py", "feedbackseg.devices.memory"),
    "feedbackseg/evaluation/compare.py": ("test_evaluate.py", FBSEG_CMD),
    "feedbackseg/evaluation/inference.py": ("test_evaluate.py", "feedbackseg.evaluation.inference"),
    "feedbackseg/json_values.py": ("test_study_runner.py", "feedbackseg.study.runner"),
    "feedbackseg/paths.py": ("test_fbseg_faults.py", FBSEG_CMD),
    "feedbackseg/runs/runlock.py": ("test_faults_round2_fbseg.py", "feedbackseg.runs.runlock"),
    "feedbackseg/study/records.py": ("test_study_runner.py", "feedbackseg.study.records"),
    "feedbackseg/training/preflight.py": ("test_fbseg_faults.py", "feedbackseg.training.preflight"),
    "feedbackseg/training/progress.py": ("test_cli_verbosity.py", "feedbackseg.training.train"),
    "cli/fbseg_cmd.py": ("test_cli.py", FBSEG_CMD),
    "cli/fbseg_errors.py": ("test_fbseg_faults.py", FBSEG_CMD),
    "cli/options.py": ("test_errors.py", "turbsim_cli.options"),
    "cli/progress_bar.py": ("test_cli_verbosity.py", "turbsim_cli.progress_bar"),
    "cli/train_options.py": ("test_config.py", FBSEG_CMD),
    "cli/turbsim_cmd.py": ("test_cli.py", TURBSIM_CMD),
    "cli/turbsim_export.py": ("test_export.py", TURBSIM_CMD),
}


def modules() -> list[str]:
    """Every module of the three packages (repository paths), ``__init__`` aside."""
    return sorted(
        p.relative_to(REPO).as_posix()
        for folder in IMPORT_NAMES
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py"
    )


def _test_files_by_name() -> dict[str, Path]:
    """Test files by name (``test_x.py`` -> path); names are unique under tests/."""
    found = sorted(TESTS.rglob("test_*.py"))
    assert len({p.name for p in found}) == len(found), "two test files share a name"
    return {p.name: p for p in found}


def named_after(module: str) -> str | None:
    """The test file named after ``module`` (repository path), or None."""
    parts = Path(module).with_suffix("").parts
    names = {f"test_{parts[-1]}.py"}
    if len(parts) > 2:
        names.add(f"test_{parts[-2]}_{parts[-1]}.py")
    return next((n for n in sorted(names) if n in _test_files_by_name()), None)


def refers_to(source: str, dotted: str) -> bool:
    """Whether a test file imports ``dotted`` (or something inside it) or names it in a string
    (a monkeypatch target, a ``python -m``)."""
    for node in ast.walk(ast.parse(source)):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = re.findall(r"[\w.]+", node.value)
        if any(name == dotted or name.startswith(dotted + ".") for name in found):
            return True
    return False


def test_refers_to_reads_imports_and_strings() -> None:
    assert refers_to("from turbsim import _files\n", "turbsim._files")
    assert refers_to("import turbsim.pipeline.plan as p\n", "turbsim.pipeline.plan")
    assert refers_to("from turbsim.pipeline.plan import make_plan\n", "turbsim.pipeline.plan")
    assert refers_to("m.setattr('feedbackseg.devices.memory.limit', 1)\n", "feedbackseg.devices")
    assert not refers_to("from turbsim.pipeline.planner import x\n", "turbsim.pipeline.plan")
    assert not refers_to("# turbsim.pipeline.plan\n", "turbsim.pipeline.plan")


@pytest.mark.parametrize("module", modules())
def test_every_module_has_its_test_file(module: str) -> None:
    named = named_after(module)
    if module in COVERED_BY:
        assert named is None, f"{module} has {named}: drop its COVERED_BY entry"
        name, via = COVERED_BY[module]
        path = _test_files_by_name().get(name)
        assert path is not None, f"{module}: COVERED_BY names {name}, which does not exist"
        assert refers_to(path.read_text(encoding="utf-8"), via), f"{name} never reaches {via}"
    else:
        assert named is not None, f"{module} has no test file: add test_{Path(module).stem}.py"


def test_covered_by_names_only_modules() -> None:
    assert set(COVERED_BY) <= set(modules())
