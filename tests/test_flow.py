"""feedbackseg.models.flow.warp: naive per-pixel loop, impulse images, turbsim agreement,
autocast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from feedbackseg.models.flow import flow_to_grid, identity_grid, warp


def _warp_naive(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """out[b, k, r, c] = bilinear image[b, k] at clamp(r + flow[b, 0]), clamp(c + flow[b, 1])."""
    b_, nch, h, w = image.shape
    out = np.zeros(image.shape, dtype=np.float64)
    for b in range(b_):
        for r in range(h):
            for c in range(w):
                y = min(max(r + float(flow[b, 0, r, c]), 0.0), h - 1.0)
                x = min(max(c + float(flow[b, 1, r, c]), 0.0), w - 1.0)
                y0, x0 = math.floor(y), math.floor(x)
                y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                fy, fx = y - y0, x - x0
                for k in range(nch):
                    img = image[b, k]
                    top = (1 - fx) * img[y0, x0] + fx * img[y0, x1]
                    bot = (1 - fx) * img[y1, x0] + fx * img[y1, x1]
                    out[b, k, r, c] = (1 - fy) * top + fy * bot
    return out


def _smooth_field(rng: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    """(2, H, W) float64 field: a few random low-frequency sinusoids, amplitude ~ amp px."""
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((2, h, w))
    for comp in range(2):
        for _ in range(3):
            ky, kx = rng.uniform(-0.3, 0.3, 2)
            field[comp] += amp / 3 * np.sin(ky * rr + kx * cc + rng.uniform(0, 2 * np.pi))
    return field


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 6), (1, 1, 6, 1), (1, 1, 1, 1)])
def test_warp_matches_naive_loop(rng, shape):
    image = rng.uniform(0, 1, shape)
    b, _, h, w = shape
    flow = rng.uniform(-4, 4, (b, 2, h, w))  # many points outside: exercises the clamp
    ref = _warp_naive(image, flow)
    got64 = warp(torch.from_numpy(image), torch.from_numpy(flow)).numpy()
    np.testing.assert_allclose(got64, ref, rtol=0, atol=1e-12)
    got32 = warp(torch.from_numpy(image).float(), torch.from_numpy(flow).float()).numpy()
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, rtol=0, atol=2e-6)
    assert np.isfinite(got32).all()


@pytest.mark.parametrize(
    ("shift", "landing"),
    [((0.0, 3.0), (4, 7)), ((0.0, -3.0), (4, 13)), ((2.0, 0.0), (2, 10)), ((-1.0, 2.0), (5, 8))],
)
def test_impulse_lands_on_exact_pixel(shift, landing):
    """A constant field (0, +3) moves content 3 px LEFT: the impulse at (4, 10) goes to (4, 7)."""
    image = torch.zeros(1, 1, 9, 16)
    image[0, 0, 4, 10] = 1.0
    flow = torch.tensor(shift).view(1, 2, 1, 1).expand(1, 2, 9, 16)
    out = warp(image, flow)[0, 0]
    expected = torch.zeros(9, 16)
    expected[landing] = 1.0
    # grid_sample's [-1, 1] normalisation round trip costs ~1 ulp of the coordinate in float32.
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert divmod(int(out.argmax()), 16) == landing


def test_constant_integer_shift_is_exact_index_shift(rng):
    image = torch.from_numpy(rng.uniform(0, 1, (2, 3, 6, 8)).astype(np.float32))
    flow = torch.zeros(2, 2, 6, 8)
    flow[:, 0] = 1.0
    flow[:, 1] = -2.0
    rows = torch.clamp(torch.arange(6) + 1, 0, 5)
    cols = torch.clamp(torch.arange(8) - 2, 0, 7)
    expected = image[:, :, rows][:, :, :, cols]
    torch.testing.assert_close(warp(image, flow), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        warp(image.double(), flow.double()), expected.double(), rtol=0, atol=1e-14
    )


def test_zero_flow_is_identity(rng):
    image = torch.from_numpy(rng.uniform(0, 1, (1, 3, 7, 5)).astype(np.float32))
    torch.testing.assert_close(warp(image, torch.zeros(1, 2, 7, 5)), image, rtol=0, atol=1e-6)


def test_agrees_with_turbsim_warp_on_smooth_field(rng):
    turbsim = pytest.importorskip("turbsim")
    h, w = 23, 31
    image_hwc = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
    field = _smooth_field(rng, h, w, amp=6.0).astype(np.float32)
    ref = turbsim.warp_image(image_hwc, field, border="clamp")
    got = warp(torch.from_numpy(image_hwc).permute(2, 0, 1)[None], torch.from_numpy(field)[None])[
        0
    ].permute(1, 2, 0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-5)


def test_impulse_agrees_with_turbsim():
    """SPEC 2.2: the same impulse image through both warps lands on the same pixel."""
    turbsim = pytest.importorskip("turbsim")
    image = np.zeros((9, 16, 1), np.float32)
    image[4, 10] = 1.0
    field = np.zeros((2, 9, 16), np.float32)
    field[0], field[1] = 2.0, 3.0
    ref = turbsim.warp_image(image, field, border="clamp")[:, :, 0]
    got = warp(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(field)[None])
    assert np.argwhere(ref).tolist() == [[2, 7]]
    assert np.argwhere(got[0, 0].numpy() > 0.5).tolist() == [[2, 7]]
    np.testing.assert_allclose(got[0, 0].numpy(), ref, rtol=0, atol=1e-5)


def test_gradient_reaches_image_and_flow(rng):
    image = torch.from_numpy(rng.uniform(0, 1, (1, 2, 5, 6))).requires_grad_()
    flow = torch.from_numpy(rng.uniform(-0.8, 0.8, (1, 2, 5, 6))).requires_grad_()
    warp(image, flow).square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert flow.grad is not None and flow.grad[:, 0].abs().sum() > 0
    assert flow.grad[:, 1].abs().sum() > 0
    # Interior, non-integer sample points: bilinear is differentiable there.
    image2 = image.detach().clone().requires_grad_()
    flow2 = torch.full((1, 2, 5, 6), 0.3, dtype=torch.float64)
    flow2[..., 1:-1, 1:-1] = torch.from_numpy(rng.uniform(-0.4, 0.4, (1, 2, 3, 4)))
    flow2.requires_grad_()
    assert torch.autograd.gradcheck(warp, (image2, flow2))


def test_clamped_points_give_zero_flow_gradient():
    image = torch.arange(12.0).view(1, 1, 3, 4)
    flow = torch.full((1, 2, 3, 4), 10.0, requires_grad=True)  # everything clamped to (2, 3)
    out = warp(image, flow)
    assert torch.equal(out, torch.full_like(out, 11.0))
    out.sum().backward()
    assert torch.equal(flow.grad, torch.zeros_like(flow))


def test_bf16_autocast_keeps_grid_float32(rng):
    """On a 2048-wide image a bf16 grid would resolve x only to ~8 px; ours must not change."""
    h, w = 2, 2048
    image = torch.from_numpy(rng.uniform(0, 1, (1, 3, h, w)).astype(np.float32))
    flow = torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 2, h, w)).astype(np.float32))
    ref = warp(image, flow)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = warp(image, flow)
        got_bf16_flow = warp(image, flow.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    # A bf16 flow loses its own precision (~2e-3 px at 0.5 px) but not the grid's.
    torch.testing.assert_close(got_bf16_flow, ref, rtol=0, atol=1e-2)
    # The test can fail: a bf16 grid is visibly wrong on this image.
    bad = torch.nn.functional.grid_sample(
        image.bfloat16(), flow_to_grid(flow).bfloat16(), padding_mode="border", align_corners=True
    )
    # (PyTorch's CPU bf16 grid_sample now and then returns NaN here: also visibly wrong.)
    error = torch.nan_to_num((bad.float() - ref).abs(), nan=float("inf"))
    assert error.max() > 0.05


def test_bf16_image_is_returned_in_bf16(rng):
    image = torch.from_numpy(rng.uniform(0, 1, (1, 1, 4, 300)).astype(np.float32))
    flow = torch.from_numpy(rng.uniform(-2, 2, (1, 2, 4, 300)).astype(np.float32))
    out = warp(image.bfloat16(), flow)
    assert out.dtype == torch.bfloat16
    ref = warp(image.bfloat16().float(), flow).bfloat16()
    assert torch.equal(out, ref)


def test_identity_grid_and_grid_normalisation():
    rows, cols = identity_grid(3, 5)
    assert rows.shape == (3, 1) and cols.shape == (1, 5) and rows.dtype == torch.float32
    grid = flow_to_grid(torch.zeros(1, 2, 3, 5))
    assert torch.equal(grid[0, 0, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.equal(grid[0, :, 0, 1], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(flow_to_grid(torch.ones(1, 2, 1, 1)), -torch.ones(1, 1, 1, 2))


@pytest.mark.parametrize(
    ("image_shape", "flow_shape"),
    [((3, 4, 5), (1, 2, 4, 5)), ((1, 3, 4, 5), (1, 2, 5, 4)), ((2, 3, 4, 5), (1, 2, 4, 5))],
)
def test_bad_shapes_raise(image_shape, flow_shape):
    with pytest.raises(ValueError, match="must be|does not match"):
        warp(torch.zeros(image_shape), torch.zeros(flow_shape))


def test_integer_image_refused():
    with pytest.raises(TypeError, match="floating-point"):
        warp(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, 2, 2, 2))
