"""`turbsim generate`: shards from a synthetic Cityscapes tree; determinism, resume, scale-out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_output import output_lines
from click.testing import CliRunner
from shards_samples import stored_samples

from turbsim import shards
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import GenerateError, make_plan, parse_shard_list, select_tasks
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.cityscapes import discover, read_image_rgb, read_train_ids
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.turbsim_cmd import main

H, W = 48, 96
FAST = {"size": None, "compression": "lzf"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_sample_tree(root, n=5, height=H, width=W, seed=3)
    return root


def _recipe(**overrides):
    return resolve_recipe(None, {**FAST, **overrides})


def test_end_to_end_round_trip(tree: Path, tmp_path: Path) -> None:
    recipe = _recipe(shard_size=2, store_flow="float16")
    out = tmp_path / "out"
    report = generate(make_plan(tree, recipe), out)
    assert report.manifest_written and not report.missing_shards
    manifest = shards.read_manifest(out)
    assert manifest["recipe_hash"] == recipe.digest() and manifest["root_seed"] == recipe.seed
    assert manifest["seeding"] and manifest["input_list_hash"] and manifest["libraries"]["numpy"]
    assert shards.verify(out) == []
    found = discover(tree, ["train", "val"])
    items = stored_samples(out)
    assert len(items) == sum(len(v) for v in found.values()) == report.samples
    for split, samples in found.items():
        for s in samples:
            item = items[(split, s.stem, 0)]
            np.testing.assert_array_equal(item["clean"], read_image_rgb(s.image_path))
            np.testing.assert_array_equal(item["label"], read_train_ids(s))
            assert item["distorted"].shape == (H, W, 3) and item["distorted"].dtype == np.uint8
            assert not np.array_equal(item["distorted"], item["clean"])
            assert item["flow"].shape == (2, H, W)
            assert item["params"]["sigma_r_px"] == pytest.approx(5.597, abs=1e-3)
    # names are in sorted (plan) order inside each split's shards
    train = [n for (sp, n, _) in items if sp == "train"]
    assert train == sorted(train)
    assert not list(out.rglob("*.tmp"))


def test_bit_identical_across_workers_and_shard_sizes(tree: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(make_plan(tree, _recipe(shard_size=2)), a, workers=1)
    generate(make_plan(tree, _recipe(shard_size=3)), b, workers=2)
    ia, ib = stored_samples(a), stored_samples(b)
    assert ia.keys() == ib.keys()
    for key in ia:
        for name in ("distorted", "clean", "label"):
            np.testing.assert_array_equal(ia[key][name], ib[key][name])


def test_seed_and_variants_change_the_distortion(tree: Path, tmp_path: Path) -> None:
    generate(make_plan(tree, _recipe(variants=2, seed=1)), tmp_path / "v")
    items = stored_samples(tmp_path / "v")
    stems = {(sp, n) for (sp, n, _) in items}
    for sp, n in stems:
        assert not np.array_equal(items[(sp, n, 0)]["distorted"], items[(sp, n, 1)]["distorted"])
    generate(make_plan(tree, _recipe(variants=2, seed=2)), tmp_path / "w")
    other = stored_samples(tmp_path / "w")
    key = next(iter(items))
    assert not np.array_equal(items[key]["distorted"], other[key]["distorted"])


def test_subset_runs_assemble_one_dataset(tree: Path, tmp_path: Path) -> None:
    recipe = _recipe(shard_size=1)
    full, part = tmp_path / "full", tmp_path / "part"
    generate(make_plan(tree, recipe), full)
    r0 = generate(make_plan(tree, recipe), part, shard_index=0, num_shards=2)
    assert not r0.manifest_written and not (part / "manifest.json").exists()
    r1 = generate(make_plan(tree, recipe), part, shard_index=1, num_shards=2)
    assert r1.manifest_written and r1.reused_shards == 0
    ia, ib = stored_samples(full), stored_samples(part)
    assert ia.keys() == ib.keys()
    for key in ia:
        np.testing.assert_array_equal(ia[key]["distorted"], ib[key]["distorted"])


def test_shard_selection_parsing() -> None:
    assert parse_shard_list("3,7-9") == {3, 7, 8, 9}
    for bad in ("x", "5-2", "-1", ""):
        with pytest.raises(GenerateError):
            parse_shard_list(bad)
    with pytest.raises(GenerateError, match="together"):
        select_tasks([], shard_index=1)


@pytest.mark.parametrize(
    ("kwargs", "key", "needle"),
    [
        ({"shard_index": 1}, "num_shards", "shard_index and num_shards go together"),
        ({"num_shards": 2}, "shard_index", "go together"),
        ({"shard_index": 2, "num_shards": 2}, "shard_index", r"shard_index must be in \[0, 2\)"),
        ({"shard_index": 0, "num_shards": 0}, "num_shards", "num_shards must be >= 1"),
        ({"shard_list": "1", "shard_index": 0, "num_shards": 2}, "shards", "cannot be combined"),
        ({"shard_list": "x"}, "shards", "bad item 'x'"),
        ({"shard_list": ","}, "shards", "empty selection"),
        ({"shard_list": "5"}, "shards", "shard 5 does not exist"),
    ],
)
def test_selection_errors_name_the_key_not_a_flag(kwargs: dict, key: str, needle: str) -> None:
    with pytest.raises(GenerateError, match=needle) as info:
        select_tasks([], **kwargs)
    assert info.value.key == key and "--" not in str(info.value)


def test_output_folder_errors_name_the_key(tmp_path: Path) -> None:
    from turbsim.pipeline.outfolder import prepare_output

    recipe = _recipe()
    with pytest.raises(GenerateError, match="exclude each other") as info:
        prepare_output(tmp_path / "a", recipe, resume=True, overwrite=True, subset=False)
    assert info.value.key == "resume"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(GenerateError, match="not a turbsim output folder") as info:
        prepare_output(foreign, recipe, resume=False, overwrite=False, subset=False)
    assert info.value.key == "out" and "--" not in str(info.value)


def test_resize_scales_flow_and_keeps_labels_nearest(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    generate(make_plan(tree, _recipe(size="24x48", store_flow="float16")), out)
    items = stored_samples(out)
    full = tmp_path / "native"
    generate(make_plan(tree, _recipe(store_flow="float16")), full)
    native = stored_samples(full)
    for key, item in items.items():
        assert item["clean"].shape == (24, 48, 3) and item["label"].shape == (24, 48)
        assert set(np.unique(item["label"])) <= set(np.unique(native[key]["label"]))
        # nearest-resized flow scaled by 1/2 on both axes
        np.testing.assert_allclose(
            item["flow"], native[key]["flow"][:, ::2, ::2] * 0.5, atol=0.02, rtol=2e-3
        )
        assert item["params"]["sigma_r_px_stored"] == pytest.approx(
            item["params"]["sigma_r_px"] / 2
        )


def _cli(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_refuses_unphysical_values_before_writing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    res = _cli(["generate", "--cityscapes", str(tree), "--out", str(out), "--cn2", "-1e-12"])
    assert res.exit_code != 0 and "cn2" in res.output and "Traceback" not in res.output
    assert len(output_lines(res.output)) == 1
    assert not out.exists()


def test_cli_dry_run_and_existing_output(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = _cli(
        [
            "generate",
            "--cityscapes",
            str(tree),
            "--out",
            str(out),
            "--dry-run",
            "--cn2",
            "3e-13:1e-12",
            "--compression",
            "lzf",
        ]
    )
    assert res.exit_code == 0, res.output
    assert "cn2 = [3e-13, 1e-12]" in res.output and "shards" in res.output
    assert not out.exists()
    args = [
        "generate",
        "--cityscapes",
        str(tree),
        "--out",
        str(out),
        "--quiet",
        "--compression",
        "lzf",
        "--shard-size",
        "4",
    ]
    assert _cli(args).exit_code == 0
    again = _cli(args)
    assert again.exit_code != 0 and "resume" in again.output
    resumed = _cli([*args, "--resume"])
    assert resumed.exit_code == 0 and "0 shard(s) rendered" in resumed.output
    other = _cli([*args, "--resume", "--seed", "5"])
    assert other.exit_code != 0 and "another recipe" in other.output
    assert _cli([*args, "--overwrite", "--seed", "5"]).exit_code == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = _cli(["generate", "--cityscapes", str(tree), "--out", str(foreign), "--quiet"])
    assert res.exit_code != 0 and "not a turbsim output folder" in res.output


def test_bad_input_is_named_and_skip_bad_records_it(tree: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tree, broken)
    label = sorted((broken / "gtFine" / "train").rglob("*_labelIds.png"))[0]
    label.unlink()
    res = _cli(["generate", "--cityscapes", str(broken), "--out", str(tmp_path / "x"), "--quiet"])
    assert res.exit_code != 0 and label.name in res.output and "Traceback" not in res.output
    out = tmp_path / "y"
    res = _cli(
        [
            "generate",
            "--cityscapes",
            str(broken),
            "--out",
            str(out),
            "--quiet",
            "--skip-bad",
            "--compression",
            "lzf",
        ]
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(label.name in json.dumps(s) for s in manifest["skipped"])


@pytest.mark.slow
def test_kill_then_resume_gives_identicalstored_samples(tree: Path, tmp_path: Path) -> None:
    """kill -9 in the middle, then --resume: only complete shards survive, result identical."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    common = ["--cityscapes", str(tree), "--quiet", "--compression", "lzf", "--shard-size", "1"]
    generate(make_plan(tree, _recipe(shard_size=1)), ref)
    cmd = [sys.executable, "-m", "turbsim_cli.turbsim_cmd", "generate", "--out", str(out), *common]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/shard-*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    res = _cli(["generate", "--out", str(out), *common, "--resume"])
    assert res.exit_code == 0, res.output
    assert "reused" in res.output
    assert not list(out.rglob("*.tmp"))
    ia, ib = stored_samples(ref), stored_samples(out)
    assert ia.keys() == ib.keys()
    for key in ia:
        np.testing.assert_array_equal(ia[key]["distorted"], ib[key]["distorted"])


@pytest.mark.slow
def test_dask_local_cluster(tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    recipe = _recipe(shard_size=3)
    ref, out = tmp_path / "ref", tmp_path / "dask"
    generate(make_plan(tree, recipe), ref)
    report = generate(make_plan(tree, recipe), out, scheduler="local-cluster", workers=1)
    assert report.manifest_written
    ia, ib = stored_samples(ref), stored_samples(out)
    for key in ia:
        np.testing.assert_array_equal(ia[key]["distorted"], ib[key]["distorted"])


def test_preview_sheets_are_valid_pngs(tree: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "data"
    generate(make_plan(tree, _recipe(shard_size=4)), out)
    res = _cli(["preview", str(out), "--out", str(tmp_path / "pv"), "--count", "2"])
    assert res.exit_code == 0, res.output
    sheets = sorted((tmp_path / "pv").glob("*.png"))
    assert len(sheets) == 3 and (tmp_path / "pv" / "overview.png") in sheets
    sheets = [p for p in sheets if p.name != "overview.png"]
    one = cv2.imread(str(sheets[0]))
    assert one is not None and one.shape[1] == 4 * W + 3 * 4 and one.shape[0] > H
    assert sheets[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the field is recomputed exactly when not stored: the distorted panel is the stored one
    from turbsim.views.preview import _TITLE_H

    items = stored_samples(out)
    name = sheets[0].name
    split, rest = name.split("_", 1)
    stem = rest.rsplit("_v", 1)[0]
    rgb = cv2.cvtColor(one, cv2.COLOR_BGR2RGB)
    panel = rgb[_TITLE_H : _TITLE_H + H, W + 4 : 2 * W + 4]
    np.testing.assert_array_equal(panel, items[(split, stem, 0)]["distorted"])
    missing = _cli(["preview", str(tmp_path / "nothing"), "--out", str(tmp_path / "pv2")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_recomputed_field_matches_stored_flow(tree: Path, tmp_path: Path) -> None:
    from turbsim.pipeline.render import sample_field

    out = tmp_path / "flow"
    recipe = _recipe(store_flow="float16")
    generate(make_plan(tree, recipe), out)
    for (split, stem, variant), item in list(stored_samples(out).items())[:2]:
        field, params = sample_field(recipe, split, stem, variant, (H, W))
        np.testing.assert_allclose(item["flow"], field, atol=1e-2, rtol=1e-3)
        assert item["params"]["cn2"] == params.cn2


def test_preview_raw_images_are_the_storedstored_samples(tree: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "data"
    generate(make_plan(tree, _recipe(shard_size=4, splits="val")), out)
    res = _cli(["preview", str(out), "--out", str(tmp_path / "pv"), "--count", "1", "--raw"])
    assert res.exit_code == 0, res.output
    (distorted,) = (tmp_path / "pv").glob("*_distorted.png")
    stem = distorted.name.split("_", 1)[1].rsplit("_v0_distorted", 1)[0]
    rgb = cv2.cvtColor(cv2.imread(str(distorted)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb, stored_samples(out)[("val", stem, 0)]["distorted"])


def test_cli_store_flow_bare_flag_means_int16(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "f"
    res = _cli(
        [
            "generate",
            "--cityscapes",
            str(tree),
            "--out",
            str(out),
            "--quiet",
            "--compression",
            "lzf",
            "--splits",
            "val",
            "--store-flow",
        ]
    )
    assert res.exit_code == 0, res.output
    manifest = shards.read_manifest(out)
    assert manifest["recipe"]["store_flow"] == "int16"
    with shards.ShardReader(out / manifest["shards"][0]["file"]) as reader:
        assert reader[0]["flow"].shape == (2, H, W)
    res = _cli(
        [
            "generate",
            "--cityscapes",
            str(tree),
            "--out",
            str(tmp_path / "g"),
            "--quiet",
            "--compression",
            "lzf",
            "--splits",
            "val",
            "--store-flow",
            "float16",
        ]
    )
    assert (
        res.exit_code == 0
        and shards.read_manifest(tmp_path / "g")["recipe"]["store_flow"] == "float16"
    )


def test_existing_dataset_refusal_names_the_flags(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    args = ["generate", "--cityscapes", str(tree), "--out", str(out), "--splits", "val"]
    args += ["--compression", "lzf", "--quiet"]
    assert _cli(args).exit_code == 0
    res = _cli(args)
    lines = output_lines(res.output)
    assert res.exit_code != 0 and len(lines) == 1, res.output
    assert "--resume" in lines[0] and "--overwrite" in lines[0] and "set resume" not in lines[0]
    help_text = _cli(["generate", "--help"]).output
    assert "%%" not in help_text and "modulo N is I" in help_text
