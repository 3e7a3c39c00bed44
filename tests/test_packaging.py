"""How users install: a wheel. turbsim needs no torch; the recipes travel inside the wheel.

The wheel is built offline from a copy of the source (no build isolation, no index) and installed
with ``--no-deps`` into a fresh virtual environment whose only view of the dependencies (numpy,
h5py, ...) is a path entry to this interpreter's site-packages, so the project itself can come
only from the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "turbsim", "feedbackseg", "cli", "data_manifests")


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_turbsim_dependencies_exclude_torch() -> None:
    """`pip install turbsim-feedbackseg` brings no torch; the [train] extra does."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("torch")]
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])
    assert project["scripts"] == {
        "turbsim": "turbsim_cli.turbsim_cmd:main",
        "fbseg": "turbsim_cli.fbseg_cmd:main",
    }


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv with only the wheel installed, a scratch folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    dist = tmp / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(dist), str(src)],
        cwd=tmp,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("*.whl")
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], cwd=tmp).stdout.strip())  # fmt: skip
    # The dependencies only: a plain path entry does not run this site's .pth files (so an
    # editable install of the project here stays invisible there).
    (purelib / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        cwd=tmp,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return python, tmp


def test_wheel_contains_the_recipes(wheel_env: tuple[Path, Path]) -> None:
    _, tmp = wheel_env
    (wheel,) = (tmp / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "data_manifests").glob("*.toml")}
    assert {"bmvc2020.toml", "weak.toml"} <= shipped
    assert {f"turbsim_data_manifests/{n}" for n in shipped} <= names
    studies = {p.name for p in (REPO / "feedbackseg" / "study" / "studies").glob("*.toml")}
    assert {"cpu.toml", "paper.toml"} <= studies
    assert {f"feedbackseg/study/studies/{n}" for n in studies} <= names


def test_wheel_contains_every_module(wheel_env: tuple[Path, Path]) -> None:
    """Every module of the two packages, in every room (pyproject lists the subpackages)."""
    _, tmp = wheel_env
    (wheel,) = (tmp / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO).as_posix()
        for package in ("turbsim", "feedbackseg")
        for p in (REPO / package).rglob("*.py")
    }
    assert len(modules) > 80
    assert modules - names == set()


def test_wheel_installs_no_generic_top_level_names(wheel_env: tuple[Path, Path]) -> None:
    """The repository's cli/ and data_manifests/ install under names of their own."""
    _, tmp = wheel_env
    (wheel,) = (tmp / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"turbsim", "feedbackseg", "turbsim_cli", "turbsim_data_manifests"}, top
    for record in [n for n in names if n.endswith(".dist-info/top_level.txt")]:
        assert set(zipfile.ZipFile(wheel).read(record).decode().split()) == top


def test_wheel_install_generates_with_a_shipped_recipe(wheel_env: tuple[Path, Path]) -> None:
    python, tmp = wheel_env
    where = _run([str(python), "-c", "import turbsim, turbsim_data_manifests as m; "
                  "print(turbsim.__file__); print(m.__file__)"], cwd=tmp)  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(tmp / "venv")) for line in where.stdout.split()), where.stdout
    turbsim_cmd = python.parent / "turbsim"
    cs = tmp / "cs"
    made = _run([str(turbsim_cmd), "sample-cityscapes", str(cs), "--n", "1", "--height", "32",
                 "--width", "64", "--splits", "val"], cwd=tmp)  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp / "out"
    run = _run([str(turbsim_cmd), "generate", "--cityscapes", str(cs), "--out", str(out),
                "--recipe", "bmvc2020", "--splits", "val", "--quiet"], cwd=tmp)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "manifest.json").is_file()
    assert '"bmvc2020"' in (out / "recipe.json").read_text()


@pytest.mark.parametrize(
    "args", [["train", "shards", "--out", "run"], ["eval", "a.pt", "shards"], ["plot", "run"]]
)
def test_fbseg_without_torch_says_how_to_install_it(args: list[str], tmp_path: Path) -> None:
    """turbsim alone needs no torch; every fbseg command then says so in one line, exit 1."""
    code = (
        "import sys; sys.modules['torch'] = None; "
        f"sys.argv = ['fbseg', *{args!r}]; "
        "from turbsim_cli.fbseg_cmd import main; main()"
    )
    result = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "torch" in lines[0] and "pip install 'turbsim-feedbackseg[train]'" in lines[0]
