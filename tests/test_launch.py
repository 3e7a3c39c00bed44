"""The torchrun launch environment (feedbackseg/devices/launch.py): defaults without torchrun,
the values torchrun sets, a bad value named, and rank 0 alone writing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feedbackseg.devices.launch import Launch, is_rank_zero, launch


@pytest.fixture
def no_launch(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plain_launch_is_rank_zero_of_one(no_launch: pytest.MonkeyPatch) -> None:
    assert launch() == Launch(world_size=1, rank=0, local_rank=0)
    assert is_rank_zero()
    no_launch.setenv("RANK", "")  # set but empty: as unset
    assert launch().rank == 0


def test_torchrun_variables_are_read(no_launch: pytest.MonkeyPatch) -> None:
    no_launch.setenv("WORLD_SIZE", "4")
    no_launch.setenv("RANK", "3")
    no_launch.setenv("LOCAL_RANK", "1")
    assert launch() == Launch(world_size=4, rank=3, local_rank=1)
    assert not is_rank_zero()


def test_bad_value_is_named(no_launch: pytest.MonkeyPatch) -> None:
    no_launch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match=r"environment variable RANK='zero' is not an integer"):
        launch()


def test_reading_the_launch_imports_no_torch() -> None:
    code = "import sys, feedbackseg.devices.launch as l; l.launch(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
