"""turbsim under the second hostile probe: recipe files that are not text or use the wrong
types, the blur width far outside the shipped range, a full disk as HDF5 reports it, memory
running out, absurd plans, and two runs starting on one output folder.

Every test here failed on the code before the fixes of that probe.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_output import output_lines
from click.testing import CliRunner

from turbsim import shards
from turbsim.physics import blur, theory
from turbsim.physics.params import REFERENCE_PARAMS, TurbulenceParams
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import RecipeError, resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.turbsim_cmd import main

H, W = 48, 96
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_sample_tree(root, n=3, height=H, width=W, seed=4, splits=["val"])
    return root


def _cli(args: list[str]):
    return CliRunner().invoke(main, args)


def _common(tree: Path, out: Path) -> list[str]:
    return ["generate", "--cityscapes", str(tree), "--out", str(out), "--quiet", "--splits", "val"]


def _one_line_error(res, code: int, *needles: str) -> str:
    """The run failed with ``code`` and one ``Error:`` line holding ``needles`` (the log lines
    of --resume aside)."""
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # no uncaught exception
    assert "Traceback" not in res.output
    [line] = [x for x in output_lines(res.output) if not x.startswith("resume: ")]
    assert line.startswith("Error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def _recipe(**overrides):
    return resolve_recipe(None, {"size": None, "compression": "lzf", "splits": "val", **overrides})


# ------------------------------------------------------------------ 1. a recipe that is no text
def test_recipe_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b'name = "caf\xe9"\nseed = 1\n\xff\n')
    with pytest.raises(RecipeError, match=r"latin\.toml: not UTF-8 text") as info:
        resolve_recipe(bad)
    assert info.value.key == "recipe" and "\n" not in str(info.value)
    gen = _cli(["generate", "--cityscapes", str(tmp_path), "--out", str(tmp_path / "o"),
                "--recipe", str(bad)])  # fmt: skip
    _one_line_error(gen, 2, "--recipe", str(bad), "UTF-8")  # as params
    params = _cli(["params", "--recipe", str(bad), "--fold-fields", "0"])
    _one_line_error(params, 2, "--recipe", str(bad), "UTF-8")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 2, 3. strict recipe types
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("splits = 5\n", "splits"),
        ("splits = [1, 2]\n", "splits"),
        ("seed = 1.5\n", "seed"),
        ("seed = true\n", "seed"),
        ("shard_size = 2.9\n", "shard_size"),
        ("shard_size = 4.0\n", "shard_size"),
        ("variants = true\n", "variants"),
        ('variants = "2"\n', "variants"),
        ('size = ["32", "64"]\n', "size"),
        ("name = 5\n", "name"),
        ("description = true\n", "description"),
        ("[physics]\ncn2 = true\n", "cn2"),
        ("[physics]\npath_length_m = false\n", "path_length_m"),
        ("[physics]\ncn2 = [true, 1e-12]\n", "cn2"),
        ('[physics]\naperture_m = ["0.05", "0.06"]\n', "aperture_m"),
        ("[physics]\nheight_m = [3, [4]]\n", "height_m"),
    ],
)
def test_recipe_values_of_the_wrong_type_are_refused(tmp_path: Path, text: str, key: str) -> None:
    """No silent coercion: 1.5 is no seed, true no count, a string in an array no number."""
    path = tmp_path / "typed.toml"
    path.write_text(text)
    # an override of another key must not hide which source holds the bad value
    with pytest.raises(RecipeError) as info:
        resolve_recipe(path, {"compression": "lzf"})
    message = str(info.value)
    assert info.value.key == key, message
    assert message.startswith(f"{path}: {key} ") and "\n" not in message
    res = _cli(["generate", "--cityscapes", str(tmp_path), "--out", str(tmp_path / "o"),
                "--recipe", str(path)])  # fmt: skip
    _one_line_error(res, 1, str(path), key)


def test_recipe_numbers_still_accept_what_toml_writes(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(
        "seed = 3\nshard_size = 2\nvariants = 2\nsize = [32, 64]\nsplits = 'val'\n"
        "[physics]\ncn2 = 1e-13\npath_length_m = 2000\nheight_m = [3, 5.5]\n"
        "aperture_m = '0.05:0.06'\n"
    )
    r = resolve_recipe(path)
    assert (r.seed, r.shard_size, r.variants, r.size, r.splits) == (3, 2, 2, (32, 64), ("val",))
    assert r.data["physics"]["path_length_m"] == 2000.0
    assert isinstance(r.data["physics"]["path_length_m"], float)
    assert r.data["physics"]["height_m"] == [3.0, 5.5]
    assert r.data["physics"]["aperture_m"] == [0.05, 0.06]
    # the command line gives text and click's ints: still fine
    cli = resolve_recipe(None, {"cn2": "2e-13", "seed": 4, "variants": 3, "shard_size": 7})
    assert (cli.seed, cli.variants, cli.shard_size) == (4, 3, 7)
    assert cli.data["physics"]["cn2"] == 2e-13
    with pytest.raises(RecipeError, match="command line: seed must be an integer"):
        resolve_recipe(None, {"seed": True})  # a boolean is no number, from any source


# ------------------------------------------------------------------ 4. blur width at any D / r0
def _lambda_f_over_r0(p: TurbulenceParams) -> float:
    return p.wavelength_m * p.focal_length_px / theory.r0_m(p)


#: blur_fwhm_px before the fix at the shipped recipes' D / r0 (7.9, 15.3, 31.6, 40.3): kept
SHIPPED_FWHM = {1e-13: 3.3027962770840897, 3e-13: 7.962060579510622,
                1e-12: 18.338320674299133, 1.5e-12: 24.02417504856073}  # fmt: skip


def test_blur_fwhm_holds_for_any_d_over_r0() -> None:
    """Far beyond D / r0 ~ 300 the old 4096-point grid missed the MTF (6.7e-19 px at Cn2 1e-5).

    For D / r0 >> 1 the short-exposure PSF tends to the long-exposure one, whose FWHM is
    0.98 lambda / r0 (times f in pixels); the shipped range keeps its values to the last bit.
    """
    ref = TurbulenceParams(**{**REFERENCE_PARAMS.to_dict(), "aperture_m": 0.05357142857142857})
    for cn2, before in SHIPPED_FWHM.items():
        assert blur.blur_fwhm_px(ref.with_cn2(cn2)) == before
    far = TurbulenceParams(**{**REFERENCE_PARAMS.to_dict(), "path_length_m": 1e5, "cn2": 1e-8})
    cases = [REFERENCE_PARAMS.with_cn2(1e-5), far] + [
        REFERENCE_PARAMS.with_cn2(c) for c in (3e-11, 1e-10, 1e-9, 1e-7)
    ]
    ratios = []
    for p in cases:
        fwhm = blur.blur_fwhm_px(p)
        ratio = fwhm / _lambda_f_over_r0(p)
        ratios.append((p.aperture_m / theory.r0_m(p), ratio))
        assert 0.75 < ratio < 1.0, (p, fwhm)
        # it is the half maximum of the PSF the blur applies
        assert blur.psf_profile(p, np.array([fwhm / 2]))[0] == pytest.approx(0.5, abs=1e-4)
    by_d = sorted(ratios)
    # 0.976: the long-exposure FWHM; the short exposure's (x / D)^(1/3) term fades slowly
    assert by_d[-1][0] > 1e5 and by_d[-1][1] == pytest.approx(0.976, abs=0.012)
    assert by_d[-2][0] > 5e4 and by_d[-2][1] == pytest.approx(0.976, abs=0.012)
    # the width grows with D / r0 towards the long-exposure limit (no jump where the grid adapts)
    assert all(a[1] <= b[1] + 2e-3 for a, b in zip(by_d, by_d[1:], strict=False))
    # the JSON of `turbsim params` reports it
    res = _cli(["params", "--cn2", "1e-5", "--json", "--fold-fields", "0"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["blur_fwhm_px"] == pytest.approx(0.976 * _lambda_f_over_r0(cases[0]), rel=0.012)


def test_blur_fwhm_is_continuous_where_the_grid_adapts() -> None:
    """Just below and above the D / r0 where the quadrature switches, the widths agree."""
    values = []
    for cn2 in np.geomspace(2e-11, 8e-11, 9):
        p = REFERENCE_PARAMS.with_cn2(float(cn2))
        values.append(blur.blur_fwhm_px(p) / _lambda_f_over_r0(p))
    assert np.all(np.abs(np.diff(values)) < 5e-3), values
    assert blur.encircled_energy(REFERENCE_PARAMS.with_cn2(1e-7), 3e4) > 0.5


# ------------------------------------------------------------------ 5. disk full, HDF5's words
#: What h5py raised on a full tmpfs (errno 28 or None; the time stamp carries a newline).
HDF5_ENOSPC = (
    "Can't synchronously write data (file write failed: time = Wed Dec  2 20:03:20 2026\n, "
    "filename = '{file}', file descriptor = 3, errno = 28, error message = 'No space left on "
    "device', buf = 0x7f27af8bcc58, total write size = 529344, bytes this sub-write = 529344, "
    "offset = 1048576)"
)


@pytest.mark.parametrize("with_errno", [True, False])
def test_hdf5_disk_full_is_one_line_naming_the_shard(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_errno: bool
) -> None:
    import h5py

    out = tmp_path / "out"
    setitem = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def full(self, key, value) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # the second sample (distorted, clean, label per sample)
            text = HDF5_ENOSPC.format(file=self.file.filename)
            raise OSError(errno.ENOSPC, text) if with_errno else OSError(text)
        setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    args = [*_common(tree, out), "--compression", "lzf", "--shard-size", "2", "--size", "32x64"]
    line = _one_line_error(_cli(args), 1, "(disk full)", "shard-00000.h5", "No space left")
    assert "file write failed" not in line and ".tmp" not in line
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.json").exists()
    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    res = _cli([*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert shards.verify(out) == []


# ------------------------------------------------------------------ 6. out of memory
def test_memory_error_is_one_line_and_resumable(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turbsim.pipeline import render

    out = tmp_path / "out"
    field = render.sample_field
    calls = {"n": 0}

    def greedy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("Unable to allocate 256. MiB for an array")
        return field(*args, **kwargs)

    monkeypatch.setattr(render, "sample_field", greedy)
    args = [*_common(tree, out), "--compression", "lzf", "--shard-size", "1"]
    for extra in ([], ["--resume", "--skip-bad"]):  # an input is not "bad" for want of memory
        calls["n"] = 0
        line = _one_line_error(_cli([*args, *extra]), 1, "out of memory", f"{H}x{W}", "--workers")
        assert "_leftImg8bit.png" in line  # the image it was rendering
        assert not (out / "manifest.json").exists() and not list(out.rglob("*.tmp"))
    monkeypatch.setattr(render, "sample_field", field)
    res = _cli([*args, "--resume"])
    assert res.exit_code == 0 and "2 reused" in res.output, res.output
    assert shards.verify(out) == []


@pytest.mark.slow
def test_real_memory_limit_with_two_workers(tmp_path: Path) -> None:
    """The probe: a 2048x4096 frame under a 2 GB address-space limit, --workers 2."""
    big = tmp_path / "big"
    write_sample_tree(big, n=2, height=2048, width=4096, seed=1, splits=["val"])
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))

    proc = subprocess.run(
        [sys.executable, "-m", "turbsim_cli.turbsim_cmd", *_common(big, out), "--workers", "2",
         "--shard-size", "1"],
        env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    [line] = output_lines(proc.stderr)
    assert line.startswith("Error: ") and "out of memory" in line and "2048x4096" in line
    # nothing looks complete, and no worker's half-written temporary is left behind
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.tmp"))


# ------------------------------------------------------------------ 7. absurd plans
def test_plan_size_is_checked_from_counts_before_it_is_built(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turbsim.pipeline import plan

    made = {"n": 0}
    planned = plan.PlannedSample

    def counted(*args, **kwargs):
        made["n"] += 1
        if made["n"] > 10_000:
            raise AssertionError("the plan is being built sample by sample")
        return planned(*args, **kwargs)

    monkeypatch.setattr(plan, "PlannedSample", counted)
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        res = _cli([*_common(tree, out), "--variants", "1000000000", *extra])
        _one_line_error(res, 1, "3 images x 1000000000 variants", "limit of 2000000 samples")
        assert made["n"] == 0
    assert not out.exists()
    ok = _cli([*_common(tree, out), "--variants", "2", "--dry-run"])
    assert ok.exit_code == 0 and "6 samples (3 images x 2 variants)" in ok.output, ok.output


# ------------------------------------------------------------------ 8. two starts, one folder
def _hold_run_lock(out: Path, shared: bool = False) -> subprocess.Popen:
    """A real other process that holds ``out``'s run lock until its stdin closes."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom turbsim.pipeline.outfolder import run_lock\n"
        f"with run_lock(Path({str(out)!r}), shared={shared}):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    first = holder.stdout.readline()
    if first.strip() != "held":
        holder.kill()
        raise AssertionError(f"the holder did not take the lock: {first}{holder.stdout.read()}")
    return holder


def test_no_start_touches_a_folder_whose_lock_is_held(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(make_plan(tree, _recipe(shard_size=2)), out)
    before = _files(out)
    holder = _hold_run_lock(out)
    try:
        base = [*_common(tree, out), "--compression", "lzf", "--shard-size", "2"]
        for extra in (["--overwrite", "--seed", "2"], ["--resume"], []):
            res = _cli([*base, *extra])
            _one_line_error(res, 1, str(out), f"another process (pid {holder.pid})")
            assert _files(out) == before  # nothing looked at, deleted or rewritten
        # a shard selection shares the folder with its siblings, not with a whole run
        res = _cli([*base, "--shards", "0"])
        _one_line_error(res, 1, f"pid {holder.pid}")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert _files(out) == before
    assert shards.verify(out) == [] and shards.read_manifest(out)["root_seed"] == 0


def test_shard_selections_share_the_folder_but_a_whole_run_waits(
    tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    sibling = _hold_run_lock(out, shared=True)  # a sibling task of an array, still rendering
    try:
        base = [*_common(tree, out), "--compression", "lzf", "--shard-size", "1"]
        res = _cli([*base, "--shards", "0"])
        assert res.exit_code == 0, res.output
        res = _cli([*base, "--overwrite", "--seed", "3"])
        _one_line_error(res, 1, f"pid {sibling.pid}")
    finally:
        sibling.stdin.close()
        sibling.wait(timeout=30)
    assert shards.shard_path(out, "val", 0).is_file()
    assert json.loads((out / "recipe.json").read_text())["recipe"]["seed"] == 0


@pytest.mark.slow
def test_overwrite_started_during_a_plain_runs_start_up_is_refused(
    tree: Path, tmp_path: Path
) -> None:
    """The probe: `generate`, then `--overwrite --seed 2` while the first one starts."""
    generate(make_plan(tree, _recipe()), tmp_path / "warm")  # correlation table into the cache
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "turbsim_cli.turbsim_cmd", *_common(tree, out),
           "--compression", "lzf",
           "--shard-size", "1"]  # fmt: skip
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lock = out / ".turbsim.lock"
    try:
        while first.poll() is None:  # until the first run holds the folder (its pid in the lock)
            if lock.is_file() and lock.read_text().split()[:1] == [str(first.pid)]:
                first.send_signal(signal.SIGSTOP)  # caught anywhere in its run
                break
            time.sleep(0.005)
        assert first.poll() is None, "the first run ended before it was seen holding the lock"
        second = subprocess.run(
            [*cmd, "--overwrite", "--seed", "2"], env=ENV, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        first.send_signal(signal.SIGCONT)
        output = first.communicate(timeout=120)[0].decode()
    assert first.returncode == 0, output
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"another process (pid {first.pid})" in second.stderr
    assert shards.verify(out) == []
    assert shards.read_manifest(out)["root_seed"] == 0
    assert json.loads((out / "recipe.json").read_text())["recipe"]["seed"] == 0


def test_resume_refuses_a_manifest_of_another_recipe(tree: Path, tmp_path: Path) -> None:
    """What the race left: recipe.json of seed 2 over the shards and manifest of seed 0."""
    out = tmp_path / "out"
    generate(make_plan(tree, _recipe(shard_size=2)), out)
    seed2 = _recipe(shard_size=2, seed=2)
    (out / "recipe.json").write_text(
        json.dumps({"recipe_hash": seed2.digest(), "recipe": seed2.data}, sort_keys=True)
    )
    before = _files(out)
    res = _cli([*_common(tree, out), "--compression", "lzf", "--shard-size", "2", "--resume",
                "--splits", "val", "--seed", "2"])  # fmt: skip
    _one_line_error(res, 1, "manifest.json", "another recipe")
    assert _files(out) == before


def test_resume_re_renders_shards_of_another_recipe(tree: Path, tmp_path: Path) -> None:
    """Half a dataset of seed 0 (no manifest yet) under a recipe.json of seed 2: the seed-0
    shards are rendered again, so the finished dataset is seed 2 throughout."""
    out, ref = tmp_path / "out", tmp_path / "ref"
    generate(make_plan(tree, _recipe(shard_size=1)), out, shard_list="0")
    seed2 = _recipe(shard_size=1, seed=2)
    (out / "recipe.json").write_text(
        json.dumps({"recipe_hash": seed2.digest(), "recipe": seed2.data}, sort_keys=True)
    )
    report = generate(make_plan(tree, seed2), out, resume=True)
    assert report.reused_shards == 0 and report.rendered_shards == 3
    generate(make_plan(tree, seed2), ref)
    assert shards.verify(out) == [] and shards.read_manifest(out)["root_seed"] == 2
    for index in range(3):
        with (
            shards.ShardReader(shards.shard_path(out, "val", index)) as a,
            shards.ShardReader(shards.shard_path(ref, "val", index)) as b,
        ):
            np.testing.assert_array_equal(a[0]["distorted"], b[0]["distorted"])
