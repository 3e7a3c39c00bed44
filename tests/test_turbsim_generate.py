"""``turbsim generate``'s flags (cli/turbsim_generate.py): a bad combination is a usage error
(exit 2), a state of the disk is not."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_output import error_lines, run

from turbsim_cli.turbsim_cmd import main as turbsim_cli


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from turbsim.sources.synthetic import write_sample_tree

    root = tmp_path_factory.mktemp("cityscapes")
    write_sample_tree(root, 1, 32, 64, seed=0, splits=("train",))
    return root


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--shard-index", "0"], "--num-shards"),
        (["--num-shards", "2"], "--shard-index"),
        (["--shard-index", "5", "--num-shards", "2"], "--shard-index"),
        (["--shard-index", "-1", "--num-shards", "2"], "--shard-index"),
        (["--num-shards", "0", "--shard-index", "0"], "--num-shards"),
        (["--resume", "--overwrite"], "--resume"),
        (["--shards", "3,x"], "--shards"),
        (["--shards", "0", "--shard-index", "0", "--num-shards", "1"], "--shards"),
        (["--shards", "0", "--dry-run", "--shard-index", "0", "--num-shards", "1"], "--shards"),
    ],
)
def test_generate_bad_flag_combination_is_a_usage_error(
    tiny_tree: Path, tmp_path: Path, args: list[str], flag: str
) -> None:
    out = tmp_path / "out"
    common = ["--cityscapes", tiny_tree, "--out", out, "--quiet", "--splits", "train"]
    result = run(turbsim_cli, "generate", *common, *args)
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert f"'{flag}'" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())  # refused before writing anything


def test_generate_folder_problem_is_not_a_usage_error(tiny_tree: Path, tmp_path: Path) -> None:
    """A state of the disk (a foreign non-empty --out), not a flag mistake: exit code 1."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    common = ["--cityscapes", tiny_tree, "--out", out, "--quiet", "--splits", "train"]
    result = run(turbsim_cli, "generate", *common)
    assert result.exit_code == 1, result.output
    assert "not a turbsim output folder" in result.output
    assert (out / "mine.txt").read_text() == "keep me"
