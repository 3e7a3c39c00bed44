"""The physics commands (cli/turbsim_physics.py): ``turbsim params`` (table and JSON, the flags,
errors naming their flag), ``turbsim field`` (the library's field, PNG) and ``plot-stats``."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from cli_output import error_lines, run

import turbsim
from turbsim.physics.quantities import describe
from turbsim_cli import options
from turbsim_cli.turbsim_cmd import main as turbsim_cli

REFERENCE = turbsim.TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)


HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_params_table_shows_reference_sigma_r() -> None:
    result = run(turbsim_cli, "params")
    assert result.exit_code == 0, result.output
    match = re.search(r"^\s*sigma_r_px\s+([0-9.eE+-]+)\s+px\b", result.output, re.MULTILINE)
    assert match is not None, result.output
    assert float(match.group(1)) == pytest.approx(5.597, abs=1e-3)
    for name in ["f_theta_d_px", "rho", "q", "r0_m", "d_over_r0", "variance_coefficient"]:
        assert re.search(rf"^\s*{name}\s", result.output, re.MULTILINE), name


def test_params_json_matches_summary() -> None:
    result = run(turbsim_cli, "params", "--json", "--cn2", "3e-13", "--fold-fields", "0")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    expected = describe(REFERENCE.with_cn2(3e-13))
    assert summary.keys() == expected.keys()  # no fold fraction asked for
    folded = json.loads(run(turbsim_cli, "params", "--json", "--native-size", "64x64").output)
    fold_keys = {"fold_fraction", "fold_fraction_stderr", "fold_fields", "native_size"}
    assert folded.keys() == expected.keys() | fold_keys
    assert summary["sigma_r_px"] == pytest.approx(3.066, abs=1e-3)
    assert summary["rho"] == pytest.approx(expected["rho"], rel=1e-12)


def test_physics_flags_reach_the_parameters() -> None:
    result = run(
        turbsim_cli,
        "params",
        "--json",
        "--path-length",
        "5000",
        "--cn2",
        "7e-13",
        "--aperture",
        "0.1",
        "--wavelength",
        "6e-7",
        "--focal-length",
        "2262",
        "--path-height",
        "10",
        "--wave",
        "plane",
        "--fold-fields",
        "0",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    expected = describe(
        turbsim.TurbulenceParams(
            cn2=7e-13,
            path_length_m=5000.0,
            aperture_m=0.1,
            wavelength_m=6e-7,
            focal_length_px=2262.0,
            height_m=10.0,
            wave="plane",
        )
    )
    assert summary == pytest.approx(expected)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--cn2", "-1"),
        ("--path-length", "0"),
        ("--aperture", "-0.1"),
        ("--wavelength", "nan"),
        ("--focal-length", "inf"),
        ("--path-height", "0"),
    ],
)
def test_bad_physics_value_is_one_line_naming_the_flag(flag: str, value: str) -> None:
    result = run(turbsim_cli, "params", flag, value)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert flag in lines[0]
    assert lines[0].startswith("Error:")
    assert "Traceback" not in result.output


#: `turbsim params` before the refactor of issue 10 (the table must not change).
REFERENCE_TABLE = """\
inputs:
  cn2                         1e-12  m^-2/3  refractive-index structure constant Cn2
  path_length_m                2000  m       camera-to-scene range L
  aperture_m              0.0535714  m       aperture diameter D
  wavelength_m              5.5e-07  m       wavelength lambda
  focal_length_px             75000  px      focal length f
  height_m                        4  m       height h of the path above ground
  wave                    spherical          wave model
derived:
  theta_d_rad           2.67857e-05  rad     theta_D = D / L
  f_theta_d_px              2.00893  px      f theta_D: pixels per unit of eta
  outer_scale_m                 1.6  m       outer scale L0 = 0.4 h
  rho                       29.8667  1       rho = L0 / D: shape of the correlation
  q                         1.61524  1       q = D / sqrt(lambda L)
  variance_coefficient      1.04966  1       c(q) in sigma_A^2 = c Cn2 L D^-1/3
  sigma_a_rad           7.46251e-05  rad     std of the angle of arrival, one axis
  sigma_r_px                5.59688  px      std of the displacement, one axis
  r0_m                   0.00169738  m       Fried parameter r0
  d_over_r0                 31.5613  1       D / r0
  theta0_px               0.0623041  px      f theta0: isoplanatic angle in pixels
  blur_fwhm_px              18.3383  px      FWHM of the mean short-exposure PSF (with diffraction)
"""


def test_params_table_is_unchanged() -> None:
    """The table of before, then the fold fractions as a section of their own."""
    result = run(turbsim_cli, "params", "--fold-fields", "0")
    assert result.exit_code == 0, result.output
    assert result.output == REFERENCE_TABLE
    folded = run(turbsim_cli, "params", "--native-size", "64x128", "--size", "32x64")
    assert folded.output.startswith(REFERENCE_TABLE)
    tail = folded.output[len(REFERENCE_TABLE) :].splitlines()
    assert tail[0] == "fold fraction (Monte Carlo over 4 fields):"
    assert [line.split()[0] for line in tail[1:]] == [
        "fold_fraction", "fold_fraction_stderr", "fold_fields", "native_size",
        "fold_fraction_stored", "fold_fraction_stored_stderr", "stored_size",
    ]  # fmt: skip
    assert tail[4].split()[1:3] == ["64x128", "px"]


def test_params_json_is_unchanged() -> None:
    result = run(turbsim_cli, "params", "--json", "--fold-fields", "0")
    assert result.exit_code == 0, result.output
    assert result.output.startswith('{\n  "cn2": 1e-12,\n  "path_length_m": 2000.0,\n')
    assert '\n  "sigma_r_px": 5.596878766177494,\n' in result.output
    assert '\n  "d_over_r0": 31.561295454440597,\n' in result.output
    data = json.loads(result.output)
    assert list(data)[-2:] == ["theta0_px", "blur_fwhm_px"]  # issue 13: after d_over_r0
    assert data["theta0_px"] == pytest.approx(0.0623, abs=1e-4)


def test_physics_error_maps_its_key_to_the_flag_without_reading_the_message() -> None:
    """The flag comes from ParamsError.key; the message is passed through untouched."""
    with pytest.raises(click.BadParameter) as caught:
        options.params_from_options(
            cn2=1e-12,
            path_length=2000.0,
            aperture=0.05,
            wavelength=5.5e-7,
            focal_length=75000.0,
            path_height=-4.0,
            wave="spherical",
        )
    assert caught.value.param_hint == "'--path-height'"
    assert caught.value.message == "height_m must be finite and > 0, got -4.0"
    error = ValueError("cn2 is the first word but no key is set")
    assert options.bad_parameter(error, {"cn2": "--cn2"}).param_hint is None
    error.key = "cn2"  # type: ignore[attr-defined]
    assert options.bad_parameter(error, {"cn2": "--cn2"}).param_hint == "'--cn2'"


def test_field_writes_the_library_field(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "f.npy"
    result = run(turbsim_cli, "field", "--size", "32x48", "--seed", "1", "--out", out)
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert saved.dtype == np.float32
    assert saved.shape == (2, 32, 48)
    expected = turbsim.sample_tilt_field(REFERENCE, (32, 48), np.random.default_rng(1))
    np.testing.assert_array_equal(saved, expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.npy"]  # no temporary left


def test_field_per_field_normalisation_and_physics(tmp_path: Path) -> None:
    out = tmp_path / "f.npy"
    args = ["--size", "16x24", "--seed", "3", "--normalize", "per-field", "--cn2", "1e-13"]
    result = run(turbsim_cli, "field", *args, "--out", out)
    assert result.exit_code == 0, result.output
    rng = np.random.default_rng(3)
    expected = turbsim.sample_tilt_field(
        REFERENCE.with_cn2(1e-13), (16, 24), rng, normalize="per-field"
    )
    np.testing.assert_array_equal(np.load(out), expected)


def test_field_unwritable_out_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").touch()
    result = run(turbsim_cli, "field", "--size", "8x8", "--out", tmp_path / "a_file" / "f.npy")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write"), result.output


@pytest.mark.parametrize("size", ["32by48", "32x", "x48", "0x48", "32x-4", "3.5x4", ""])
def test_field_refuses_bad_size(tmp_path: Path, size: str) -> None:
    out = tmp_path / "f.npy"
    result = run(turbsim_cli, "field", "--size", size, "--out", out)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "--size" in lines[0], result.output
    assert not out.exists()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the viz extra) is not installed")
def test_field_png(tmp_path: Path) -> None:
    import cv2

    png = tmp_path / "pics" / "f.png"
    result = run(turbsim_cli, "field", "--size", "32x48", "--out", tmp_path / "f.npy", "--png", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(png))
    assert image is not None and image.shape == (32, 48, 3)
    assert sorted(p.name for p in png.parent.iterdir()) == ["f.png"]


def test_field_png_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    out = tmp_path / "f.npy"
    result = run(turbsim_cli, "field", "--size", "8x8", "--out", out, "--png", tmp_path / "f.png")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert "pip install 'turbsim-feedbackseg[viz]'" in lines[0]
    assert not out.exists()  # refused before doing any work


def test_plot_stats_unwritable_json_is_one_line(tmp_path) -> None:
    """Review finding: --json under a file gave a FileExistsError traceback."""
    pytest.importorskip("matplotlib")
    (tmp_path / "f").write_text("x")
    result = run(turbsim_cli, "plot-stats", "--size", "32x32", "--fields", "4", "--out",
                 str(tmp_path / "p.png"), "--json", str(tmp_path / "f" / "s.json"))  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: cannot write")
    assert "Traceback" not in result.output
