"""turbsim.augment: the torch functional core against the numpy path on the same inputs, the
statistics of RandomTurbulence fields against the theory, determinism, and bad input.

Equivalence tolerances: float32 arithmetic on both sides (FFTs in single precision), so a few
ulps of the values' range. Statistical tolerances come from the sample count (each assertion
also checks that its standard error is small enough to mean something).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from turbsim import (  # noqa: E402
    TurbulenceParams,
    augment,
    blur_image,
    sample_tilt_field,
    tilt_correlation,
    warp_image,
)
from turbsim.physics.field import blackman, draw_noise, render_unit_field, spectral_filter  # noqa: E402
from turbsim.physics.resample import area_resize_field  # noqa: E402
from turbsim.physics.theory import sigma_r_px  # noqa: E402
from turbsim.pipeline.recipe import RecipeError, resolve_recipe  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------ exact functional core
@pytest.mark.parametrize("shape", [(16, 24), (17, 9), (5, 2), (33, 64)])
def test_render_unit_fields_equals_numpy_on_the_same_noise(
    reference_params: TurbulenceParams, shape: tuple[int, int]
) -> None:
    filt = spectral_filter(reference_params, shape)
    rng = np.random.default_rng(4)
    noise = np.stack([draw_noise(rng, shape) for _ in range(3)])
    want = np.stack([render_unit_field(filt, z) for z in noise])
    got = augment.render_unit_fields(filt, torch.from_numpy(noise))
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, 2, *shape)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6 * np.abs(want).max())
    single = augment.render_unit_fields(filt, torch.from_numpy(noise[1]))
    np.testing.assert_allclose(single.numpy(), want[1], atol=2e-6 * np.abs(want).max())


def test_render_unit_fields_refuses_noise_of_another_shape(
    reference_params: TurbulenceParams,
) -> None:
    filt = spectral_filter(reference_params, (8, 8))
    with pytest.raises(ValueError, match="noise must be"):
        augment.render_unit_fields(filt, augment.draw_noise((8, 9), batch=2))


@pytest.mark.parametrize("border", ["clamp", "reflect", "zero"])
@pytest.mark.parametrize("shape", [(9, 13), (1, 7), (24, 31)])
def test_warp_equals_warp_image(border: str, shape: tuple[int, int]) -> None:
    """Small and large displacements (far outside the frame: reflect wraps several periods)."""
    h, w = shape
    rng = np.random.default_rng([len(border), h, w])
    image = rng.random((3, h, w, 3)).astype(np.float32)
    scale = np.array([0.7, 4.0, 40.0]).reshape(3, 1, 1, 1)
    flow = (rng.standard_normal((3, 2, h, w)) * scale).astype(np.float32)
    flow[0, :, 0, :2] = np.round(flow[0, :, 0, :2])  # integer shifts, edges exactly hit
    want = np.stack([warp_image(image[i], flow[i], border) for i in range(3)])
    got = _nhwc(augment.warp(_nchw(image), torch.from_numpy(flow), border))
    # the contract: 1e-4 (float32 sample coordinates; measured <= 2e-5 over 300 seeds here)
    np.testing.assert_allclose(got, want, atol=1e-4)
    u8 = (image * 255).astype(np.uint8)
    want8 = np.stack([warp_image(u8[i], flow[i], border) for i in range(3)])
    got8 = _nhwc(augment.warp(_nchw(u8), torch.from_numpy(flow), border))
    assert got8.dtype == np.uint8
    assert np.abs(got8.astype(int) - want8).max() <= 1


def test_warp_impulse_convention() -> None:
    """A constant field (0, +3) moves an impulse 3 px left; (+2, 0) moves it 2 px up."""
    image = torch.zeros(1, 1, 20, 20)
    image[0, 0, 10, 10] = 1.0
    flow = torch.zeros(1, 2, 20, 20)
    flow[:, 1] = 3.0
    out = augment.warp(image, flow)
    assert out[0, 0, 10, 7] == 1.0 and out.sum() == 1.0
    flow = torch.zeros(1, 2, 20, 20)
    flow[:, 0] = 2.0
    assert augment.warp(image, flow)[0, 0, 8, 10] == 1.0


def test_warp_bad_input() -> None:
    image = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="flow must be"):
        augment.warp(image, torch.zeros(2, 2, 8, 9))
    with pytest.raises(ValueError, match="border"):
        augment.warp(image, torch.zeros(2, 2, 8, 8), border="wrap")
    bad = torch.zeros(2, 2, 8, 8)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        augment.warp(image, bad)


def test_blur_images_equals_blur_image(reference_params: TurbulenceParams) -> None:
    rng = np.random.default_rng(8)
    params = [reference_params, reference_params.with_cn2(3e-13), reference_params]
    u8 = rng.integers(0, 256, (3, 40, 57, 3), dtype=np.uint8)
    want = np.stack([blur_image(u8[i], params[i]) for i in range(3)])
    got = _nhwc(augment.blur_images(_nchw(u8), params))
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1 and np.mean(got != want) < 1e-3
    f32 = u8.astype(np.float32) / 255
    want = np.stack([blur_image(f32[i], params[i]) for i in range(3)])
    got = _nhwc(augment.blur_images(_nchw(f32), params))
    np.testing.assert_allclose(got, want, atol=2e-6)
    # a constant image stays constant
    flat = torch.full((1, 3, 20, 30), 0.25)
    np.testing.assert_allclose(augment.blur_images(flat, reference_params).numpy(), 0.25, atol=1e-6)


@pytest.mark.parametrize("size", [(16, 32), (24, 40), (13, 21)])
def test_area_resize_fields_equals_numpy(size: tuple[int, int]) -> None:
    """Integer ratios (block means) and non-integer ones (OpenCV's fractional weights)."""
    field = np.random.default_rng(2).standard_normal((2, 2, 64, 128)).astype(np.float32)
    want = np.stack([area_resize_field(f, size) for f in field])
    got = augment.area_resize_fields(torch.from_numpy(field), size).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------- the module
def test_forward_shapes_dtypes_and_determinism() -> None:
    module = augment.RandomTurbulence("bmvc2020")
    images = torch.rand(3, 3, 32, 48)
    out, flow = module(images, torch.Generator().manual_seed(5))
    again, flow2 = module(images, torch.Generator().manual_seed(5))
    other, flow3 = module(images, torch.Generator().manual_seed(6))
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 3, 32, 48)
    assert flow.dtype == torch.float32 and tuple(flow.shape) == (3, 2, 32, 48)
    assert torch.equal(out, again) and torch.equal(flow, flow2)
    assert not torch.equal(flow, flow3)
    assert not torch.equal(flow[0], flow[1])  # every image its own field
    # per-field normalisation (bmvc2020): each component's sample std is sigma_r
    std = flow.double().reshape(3, 2, -1).std(dim=-1)
    np.testing.assert_allclose(std.numpy(), 5.59688, rtol=1e-4)
    # the output is the warp of the images by the returned flow
    np.testing.assert_allclose(out.numpy(), augment.warp(images, flow).numpy(), atol=0)
    u8 = (images * 255).to(torch.uint8)
    out8, _ = module(u8, torch.Generator().manual_seed(5))
    assert out8.dtype == torch.uint8


def test_per_image_generators_make_each_draw_independent_of_the_batch() -> None:
    module = augment.RandomTurbulence("synthetic-benchmark", native_size=(64, 128))
    images = torch.rand(4, 3, 32, 64)
    batch, flow = module(images, [torch.Generator().manual_seed(i) for i in range(4)])
    alone, flow_alone = module(images[2:3], [torch.Generator().manual_seed(2)])
    assert torch.equal(flow[2], flow_alone[0]) and torch.equal(batch[2], alone[0])


def test_ranges_are_drawn_per_image_on_the_rho_grid() -> None:
    recipe = resolve_recipe(None, {"cn2": "1e-13:1e-12", "height_m": "3:5"})
    module = augment.RandomTurbulence(recipe)
    generators = [torch.Generator().manual_seed(i) for i in range(6)]
    params = [module.sample_params(g) for g in generators]
    cn2 = {p.cn2 for p in params}
    assert len(cn2) == 6 and all(1e-13 <= c <= 1e-12 for c in cn2)
    for p in params:  # the 1 % log grid of turbsim generate
        k = math.log(p.height_m) / 0.01
        assert abs(k - round(k)) < 1e-9


def test_field_statistics_match_theory(reference_params: TurbulenceParams) -> None:
    """Variance and lag-d correlations (both components, along x and y) of M fields.

    Ensemble normalisation; theory b(d / f theta_D) times the rendered taper (test_field.py).
    """
    m, s = 240, 64
    module = augment.RandomTurbulence(reference_params)
    flow, _ = module.sample_fields(m, (s, s), torch.Generator().manual_seed(0))
    f = flow.double().numpy()
    s2 = sigma_r_px(reference_params) ** 2
    per_field = (f**2).mean(axis=(2, 3))
    se = per_field.std(axis=0, ddof=1) / math.sqrt(m)
    assert np.all(se < 0.03 * s2)
    np.testing.assert_allclose(per_field.mean(axis=0), s2, atol=4 * se.max())
    w = blackman(2 * s)
    for d in (2, 6, 16):
        tau = (w[s + d] + w[s - d]) / (2 * w[s])
        b_par, b_perp = (float(v) for v in tilt_correlation(reference_params, d))
        for comp, axis in ((0, 0), (0, 1), (1, 0), (1, 1)):  # (row/col component, y/x lag)
            a = f[:, comp]
            x, y = (a[:, :-d, :], a[:, d:, :]) if axis == 0 else (a[:, :, :-d], a[:, :, d:])
            per = (x * y).mean(axis=(1, 2)) / s2
            est, err = per.mean(), per.std(ddof=1) / math.sqrt(m)
            parallel = comp == axis  # row component along rows, column along columns
            theory = (b_par if parallel else b_perp) * tau
            assert err < 0.04
            assert est == pytest.approx(theory, abs=max(4 * err, 0.01)), (d, comp, axis)


def test_native_size_fields_have_the_law_of_area_averaged_native_fields(
    reference_params: TurbulenceParams,
) -> None:
    """Stored-size fields of RandomTurbulence(native_size) against the numpy path's native
    fields area-averaged: variance and neighbour correlation agree within the sample error."""
    m, native, stored = 96, (64, 128), (16, 32)
    module = augment.RandomTurbulence(reference_params, native_size=native)
    ours, _ = module.sample_fields(m, stored, torch.Generator().manual_seed(1))
    rng = np.random.default_rng(1)
    numpy_fields = np.stack(
        [
            area_resize_field(sample_tilt_field(reference_params, native, rng), stored)
            for _ in range(m)
        ]
    )
    for fields in (ours.double().numpy(), numpy_fields.astype(np.float64)):
        assert fields.shape == (m, 2, *stored)
    a, b = ours.double().numpy(), numpy_fields.astype(np.float64)
    for stat in (
        lambda f: (f**2).mean(axis=(2, 3)),
        lambda f: (f[..., :, 1:] * f[..., :, :-1]).mean(axis=(2, 3)),
    ):
        sa, sb = stat(a), stat(b)
        err = math.hypot(sa.std(ddof=1), sb.std(ddof=1)) / math.sqrt(m)
        assert abs(sa.mean() - sb.mean()) < 4 * err
    # the stored field is in stored pixels: ~ sigma_r / 4, less what the average smooths away
    assert 0.5 < math.sqrt((a**2).mean()) / (sigma_r_px(reference_params) / 4) < 1.0


def test_bad_recipes_and_sizes_are_one_line_errors() -> None:
    with pytest.raises(RecipeError, match="recipe file not found") as info:
        augment.RandomTurbulence("no-such-recipe")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="larger than native_size"):
        augment.RandomTurbulence("bmvc2020", native_size=(16, 16))(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="native_size"):
        augment.RandomTurbulence("bmvc2020", native_size=(1, 16))
    with pytest.raises(TypeError, match="recipe must be"):
        augment.RandomTurbulence(42)
    with pytest.raises(RecipeError, match="resolved turbsim recipe"):
        augment.RandomTurbulence({"name": "half a recipe"})
    with pytest.raises(ValueError, match="images must be"):
        augment.RandomTurbulence("bmvc2020")(torch.rand(3, 32, 32))


@pytest.mark.parametrize("blur", ["none", "short-exposure"])
def test_native_size_approximates_turbsim_generate_size(tmp_path, blur: str) -> None:
    """The same native field applied the online way (area-averaged field on the stored clean
    image, blur in stored pixels) against what ``turbsim generate --size`` stored: per-image
    PSNR far above that of the distortion itself (measured: ~31 dB tilt only, ~46 dB with
    blur at this 4x ratio, against ~19 dB between clean and distorted)."""
    from turbsim.pipeline.generate import generate
    from turbsim.pipeline.plan import make_plan
    from turbsim.pipeline.render import sample_field
    from turbsim.shards import ShardReader
    from turbsim.sources.synthetic import write_sample_tree

    native, stored = (128, 256), (32, 64)
    write_sample_tree(tmp_path / "cs", n=2, height=native[0], width=native[1], seed=0,
                      splits=("val",))  # fmt: skip
    recipe = resolve_recipe("bmvc2020", {"blur": blur, "splits": "val", "size": "32x64"})
    generate(make_plan(tmp_path / "cs", recipe), tmp_path / "shards")

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return 10 * math.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))

    (path,) = (tmp_path / "shards" / "val").glob("shard-*.h5")
    with ShardReader(path) as reader:
        for item in reader:
            field, params = sample_field(recipe, "val", item["name"], item["variant"], native)
            images = torch.from_numpy(item["clean"]).permute(2, 0, 1)[None]
            flow = augment.area_resize_fields(torch.from_numpy(field)[None], stored)
            online = augment.warp(images, flow, recipe.border)
            if blur != "none":
                online = augment.blur_images(online, params, (0.25, 0.25))
            online = online[0].permute(1, 2, 0).numpy()
            same, distortion = (
                psnr(online, item["distorted"]),
                psnr(item["clean"], item["distorted"]),
            )
            assert same > 27 and same > distortion + 8, (same, distortion)
            # and the module's own draw at this scale is as strong as generate's
            module = augment.RandomTurbulence(recipe, native_size=native)
            _, fresh = module(images, torch.Generator().manual_seed(0))
            ratio = float(fresh.std()) / float(np.std(area_resize_field(field, stored)))
            assert 0.7 < ratio < 1.4


def test_stored_render_has_the_law_of_the_native_render(reference_params: TurbulenceParams) -> None:
    """render="stored" (fields drawn at the images' size with the area-averaged covariance)
    against render="native" (drawn at the native size, then area-averaged): variance and a
    lag-2 moment within the sample error; non-integer ratios are refused."""
    m, native, size = 64, (128, 256), (32, 64)
    fields = {}
    for render in ("native", "stored"):
        module = augment.RandomTurbulence(reference_params, native_size=native, render=render)
        flow, _ = module.sample_fields(m, size, torch.Generator().manual_seed(9))
        fields[render] = flow.double().numpy()
    for stat in (
        lambda f: (f**2).mean(axis=(2, 3)),
        lambda f: (f[..., 2:, :] * f[..., :-2, :]).mean(axis=(2, 3)),
    ):
        a, b = stat(fields["native"]), stat(fields["stored"])
        err = np.hypot(a.std(axis=0, ddof=1), b.std(axis=0, ddof=1)) / math.sqrt(m)
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * err)
    odd = augment.RandomTurbulence(reference_params, native_size=(100, 200), render="stored")
    with pytest.raises(ValueError, match="integer multiple"):
        odd(torch.rand(1, 3, 30, 60))
    with pytest.raises(ValueError, match="render must be"):
        augment.RandomTurbulence(reference_params, render="fast")
