"""``import turbsim`` alone reaches the public names and rooms, and the public module paths
(``turbsim.field``, ``feedbackseg.losses``...) are the modules of their rooms (the packages'
``__init__`` and turbsim/_aliases.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import feedbackseg
import feedbackseg.data
import turbsim


def test_bare_import_reaches_the_submodules() -> None:
    code = (
        "import turbsim\n"
        "p = turbsim.TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)\n"
        "print(round(turbsim.theory.sigma_r_px(p), 3), turbsim.field.__name__,"
        " turbsim.views.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5.597", "turbsim.physics.field", "turbsim.views"]


@pytest.mark.parametrize(
    ("public", "room"), [*turbsim.PUBLIC_MODULES.items(), *feedbackseg.PUBLIC_MODULES.items()]
)
def test_public_module_path_is_its_rooms_module(public: str, room: str) -> None:
    assert importlib.import_module(public) is importlib.import_module(room)
    assert sys.modules[public] is sys.modules[room]


def test_public_paths_in_a_fresh_interpreter() -> None:
    """``from turbsim.field import ...`` before anything else imported the room; one module
    object, so a monkeypatch through either name is seen through both."""
    code = (
        "from turbsim.field import draw_noise, SpectralFilter\n"
        "from feedbackseg.losses import cb_ifl\n"
        "from feedbackseg.checkpoints import import_original\n"
        "from feedbackseg.data import ShardDataset\n"
        "import turbsim.physics.field as room, turbsim.field as public\n"
        "public.answer = 42\n"
        "print(room.answer, draw_noise.__module__, cb_ifl.__module__, ShardDataset.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "42",
        "turbsim.physics.field",
        "feedbackseg.training.losses",
        "feedbackseg.data.dataset",
    ]


def test_old_internal_paths_are_gone() -> None:
    """Only the public paths are kept: an internal module moved to its room is not importable
    by its old name (no second copy of a module)."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("turbsim.render")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("feedbackseg.train")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'render'"):
        _ = turbsim.render
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = feedbackseg.data.nothing
