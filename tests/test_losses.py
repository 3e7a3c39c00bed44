"""feedbackseg.training.losses: cross-entropy limit, naive per-pixel CB-iFL, gradients, class
weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import cb_ifl_naive as _cb_ifl_naive

from feedbackseg.training.losses import (
    BMVC2020_CLASS_WEIGHTS,
    ERFNET_CLASS_WEIGHTS,
    CBiFLLoss,
    FocalLoss,
    IFLLoss,
    cb_ifl,
    class_balanced_weights,
    count_pixels,
    focal_loss,
    ifl,
    iteration_gammas,
)


def _focal_autograd_naive(logits, target, weights, gamma, ignore_index=255):
    """Dense autograd version with an explicitly detached factor (per-image mean, batch mean)."""
    logp = torch.log_softmax(logits, dim=1)
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    logp_t = logp.gather(1, safe[:, None])[:, 0]
    factor = (1 - logp_t.exp()).detach() ** gamma
    w = weights[safe] * valid
    per_image = (w * -factor * logp_t).sum((1, 2)) / w.sum((1, 2))
    return per_image.mean()


def _random_case(rng, b=2, c=5, h=3, w=4, ignore_frac=0.2, ignore_index=255):
    logits = torch.from_numpy(rng.normal(0, 2, (b, c, h, w)))
    target = torch.from_numpy(rng.integers(0, c, (b, h, w)))
    target[torch.from_numpy(rng.uniform(size=(b, h, w)) < ignore_frac)] = ignore_index
    return logits, target


def test_gamma0_unit_weights_is_per_image_cross_entropy(rng):
    logits, target = _random_case(rng, b=3, c=6, h=4, w=5, ignore_frac=0.3)
    target[0, 0, :] = 255
    ref = torch.stack(
        [F.cross_entropy(logits[i : i + 1], target[i : i + 1], ignore_index=255) for i in range(3)]
    ).mean()
    assert _counts_differ(target)  # the per-image mean is not the global mean here
    torch.testing.assert_close(ifl(logits, target, gamma=0.0), ref, rtol=1e-14, atol=0)
    torch.testing.assert_close(
        focal_loss(logits, target, 0.0, reduction="mean"),
        F.cross_entropy(logits, target, ignore_index=255),
        rtol=1e-14,
        atol=0,
    )


def _counts_differ(target) -> bool:
    n = (target != 255).sum((1, 2))
    return bool((n != n[0]).any())


def test_gamma0_equals_cross_entropy_mean_with_equal_valid_counts(rng):
    logits, target = _random_case(rng, b=3, c=4, h=4, w=4, ignore_frac=0.0)
    for b in range(3):  # two ignored pixels in every image: equal valid counts
        target[b, b, 0] = target[b, 3, b] = 255
    got = cb_ifl(logits.float(), target, torch.ones(4), gamma=0.0)
    ref = F.cross_entropy(logits.float(), target, ignore_index=255, reduction="mean")
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)
    ce_unit = ifl(logits, target, 0.0)
    torch.testing.assert_close(ce_unit, F.cross_entropy(logits, target, ignore_index=255))


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.2, 2.0])
def test_cb_ifl_matches_naive_loop_19_class_layout(rng, gamma):
    logits, target = _random_case(rng, b=2, c=19, h=3, w=4, ignore_frac=0.25)
    weights = BMVC2020_CLASS_WEIGHTS[:19]
    got = cb_ifl(logits, target, weights, gamma=gamma, alpha=0.7)
    ref = _cb_ifl_naive(logits, target, weights.double().numpy(), gamma, alpha=0.7)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(ref, rel=1e-12)


def test_cb_ifl_matches_naive_loop_20_class_layout_with_void(rng):
    """Class 19 is a real label with weight 0; 255 is also still ignored."""
    logits, target = _random_case(rng, b=2, c=20, h=3, w=5, ignore_frac=0.2)
    target[0, 0, :] = 19
    target[1, 2, 1] = 19
    weights = BMVC2020_CLASS_WEIGHTS
    got = cb_ifl(logits, target, weights, gamma=0.2)
    ref = _cb_ifl_naive(logits, target, weights.double().numpy(), 0.2)
    assert float(got) == pytest.approx(ref, rel=1e-12)
    # Changing the void logits/labels' scores changes nothing: void has weight 0.
    logits2 = logits.clone()
    logits2[0, :, 0, :] += torch.from_numpy(rng.normal(0, 5, (20, 5)))
    assert float(cb_ifl(logits2, target, weights, gamma=0.2)) == pytest.approx(float(got), 1e-12)


def test_image_with_zero_weight_contributes_zero(rng):
    logits, target = _random_case(rng, b=2, c=20, h=2, w=3, ignore_frac=0.0)
    target[0] = 19  # all void: weight sum 0
    target[1, 0, 0] = 255
    logits.requires_grad_()
    got = cb_ifl(logits, target, BMVC2020_CLASS_WEIGHTS, gamma=0.1)
    only = cb_ifl(logits[1:], target[1:], BMVC2020_CLASS_WEIGHTS, gamma=0.1)
    torch.testing.assert_close(got, only / 2)  # batch mean still counts the empty image
    got.backward()
    assert torch.isfinite(logits.grad).all() and torch.equal(logits.grad[0], torch.zeros(20, 2, 3))
    everything_ignored = torch.full((2, 2, 3), 255)
    zero = ifl(logits, everything_ignored, 0.0).detach()
    assert float(zero) == 0.0 and not torch.isnan(zero)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 2.0])
def test_gradient_uses_detached_modulating_factor(rng, gamma):
    logits, target = _random_case(rng, b=2, c=5, h=2, w=3, ignore_frac=0.2)
    weights = torch.from_numpy(rng.uniform(0.1, 2.0, 5))
    z1 = logits.clone().requires_grad_()
    cb_ifl(z1, target, weights, gamma).backward()
    z2 = logits.clone().requires_grad_()
    _focal_autograd_naive(z2, target, weights, gamma).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-12, atol=1e-15)

    # Closed form: d/dz_k = w_t (1 - p_t)^gamma (p_k - [k == t]) / sum(w) / B.
    p = torch.softmax(logits, 1)
    valid = target != 255
    safe = torch.where(valid, target, 0)
    p_t = p.gather(1, safe[:, None])[:, 0]
    w = weights[safe] * valid
    onehot = F.one_hot(safe, 5).permute(0, 3, 1, 2).double()
    scale = (w * (1 - p_t) ** gamma / w.sum((1, 2), keepdim=True) / 2)[:, None]
    torch.testing.assert_close(z1.grad, scale * (p - onehot), rtol=1e-12, atol=1e-15)

    # The test can fail: the undetached focal loss has a different gradient.
    z3 = logits.clone().requires_grad_()
    logp_t = torch.log_softmax(z3, 1).gather(1, safe[:, None])[:, 0]
    ((w * -((1 - logp_t.exp()) ** gamma) * logp_t).sum((1, 2)) / w.sum((1, 2))).mean().backward()
    assert (z3.grad - z1.grad).abs().max() > 1e-4


def test_reductions(rng):
    logits, target = _random_case(rng, b=2, c=3, h=2, w=2, ignore_frac=0.3)
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    pixel = focal_loss(logits, target, 0.3, weights, reduction="none")
    assert pixel.shape == (2, 2, 2) and torch.all(pixel[target == 255] == 0)
    w = weights[torch.where(target == 255, 0, target)] * (target != 255)
    torch.testing.assert_close(
        focal_loss(logits, target, 0.3, weights, reduction="sum"), pixel.sum()
    )
    torch.testing.assert_close(
        focal_loss(logits, target, 0.3, weights, reduction="mean"), pixel.sum() / w.sum()
    )
    torch.testing.assert_close(
        focal_loss(logits, target, 0.3, weights, reduction="per_image"),
        (pixel.sum((1, 2)) / w.sum((1, 2))).mean(),
    )
    torch.testing.assert_close(  # gamma 0, weighted "mean" is torch's weighted cross-entropy
        focal_loss(logits, target, 0.0, weights, reduction="mean"),
        F.cross_entropy(logits, target, weight=weights, ignore_index=255),
    )
    with pytest.raises(ValueError, match="reduction must be one of"):
        focal_loss(logits, target, reduction="avg")


def test_float32_and_bf16_autocast_logits(rng):
    logits, target = _random_case(rng, b=2, c=4, h=3, w=3)
    ref = cb_ifl(logits, target, torch.ones(4), 0.2)
    got32 = cb_ifl(logits.float(), target, torch.ones(4), 0.2)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), ref, rtol=1e-6, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_bf = cb_ifl(logits.bfloat16(), target, torch.ones(4), 0.2)
    assert got_bf.dtype == torch.float32
    torch.testing.assert_close(got_bf.double(), ref, rtol=3e-2, atol=0)


@pytest.mark.parametrize(
    ("num_classes", "bad"), [(19, 25), (19, 19), (19, -1), (20, 20), (20, 254)]
)
def test_out_of_range_labels_raise(num_classes, bad):
    logits = torch.zeros(1, num_classes, 2, 2)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 1, 1] = bad
    with pytest.raises(ValueError, match=rf"outside \[0, {num_classes}\).*\[{bad}\]"):
        ifl(logits, target, 0.1)
    with pytest.raises(ValueError, match="outside"):
        count_pixels(target, num_classes)


def test_bad_shapes_and_weights_raise():
    logits = torch.zeros(2, 3, 4, 5)
    with pytest.raises(ValueError, match="does not match"):
        ifl(logits, torch.zeros(2, 4, 4, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="integer labels"):
        ifl(logits, torch.zeros(2, 4, 5), 0.0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        cb_ifl(logits, torch.zeros(2, 4, 5, dtype=torch.long), torch.ones(4), 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        cb_ifl(logits, torch.zeros(2, 4, 5, dtype=torch.long), torch.tensor([1.0, -1, 1]), 0.0)
    with pytest.raises(ValueError, match="gamma"):
        ifl(logits, torch.zeros(2, 4, 5, dtype=torch.long), -0.1)


def test_class_balanced_weights_hand_computed():
    # beta = 0.5: w = 0.5 / (1 - 0.5^n): n=1 -> 1, n=2 -> 2/3, n=3 -> 4/7; n=0 -> 0 (unseen).
    w = class_balanced_weights([1, 2, 3, 0], beta=0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, 2 / 3, 4 / 7, 0.0]), rtol=1e-7, atol=0)
    # beta = 0.9999, n = 10000: 1e-4 / (1 - 0.9999^10000) = 1e-4 / (1 - e^-1.00005) = 1.581931e-4
    w = class_balanced_weights(torch.tensor([10000.0, 1e9]), beta=0.9999)
    assert float(w[0]) == pytest.approx(1e-4 / (1 - 0.9999**10000), rel=1e-6)
    assert float(w[0]) == pytest.approx(1.581931e-4, rel=1e-6)
    assert float(w[1]) == pytest.approx(1e-4, rel=1e-6)  # n -> inf: 1 - beta
    torch.testing.assert_close(
        class_balanced_weights([5, 0, 7], beta=0.0), torch.tensor([1.0, 0, 1])
    )
    for bad in ([1, -1], [[1, 2]], [1, float("nan")]):
        with pytest.raises(ValueError, match="pixel_counts"):
            class_balanced_weights(bad)
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([1, 2], beta=1.0)


def test_bmvc2020_constants_from_erfnet_weights():
    e = [2.8149, 6.9850, 3.7890, 9.9428, 9.7702, 9.5110, 10.3113, 10.0264, 4.6323, 9.5608,
         7.8698, 9.5168, 10.3737, 6.6616, 10.2604, 10.2878, 10.2898, 10.4053, 10.1380]  # fmt: skip
    assert ERFNET_CLASS_WEIGHTS.shape == (20,) and float(ERFNET_CLASS_WEIGHTS[19]) == 0.0
    torch.testing.assert_close(ERFNET_CLASS_WEIGHTS[:19], torch.tensor(e))
    expected = [(1 - 0.9999) / (1 - 0.9999 ** (100 / ec)) for ec in e] + [0.0]
    assert BMVC2020_CLASS_WEIGHTS.shape == (20,)
    np.testing.assert_allclose(BMVC2020_CLASS_WEIGHTS.numpy(), expected, rtol=1e-6)
    # Hand check, road: n = 100 / 2.8149 = 35.5253; 1e-4 / (1 - 0.9999^35.5253) = 0.0281976
    assert float(BMVC2020_CLASS_WEIGHTS[0]) == pytest.approx(0.0281976, rel=1e-5)


def test_iteration_gammas():
    assert iteration_gammas(3) == [0.0, 0.1, 0.2]
    assert iteration_gammas(4) == [0.0, 0.1, 0.2, 0.3]
    assert iteration_gammas(2, step=0.5) == [0.0, 0.5]
    with pytest.raises(ValueError, match="iterations"):
        iteration_gammas(0)


def test_modules_match_the_naive_loop(rng):
    """The loss modules against the per-pixel loop (not against the functions they call): the
    iteration sum with gamma_t = 0.1 (t - 1), the (logits, label, t) protocol of the training
    steps (t 1-based), IFL (unit weights) and focal loss with reduction "mean"."""
    logits, target = _random_case(rng, b=2, c=20, h=2, w=3)
    seq = [logits, logits * 0.5, logits * 2.0]
    weights = BMVC2020_CLASS_WEIGHTS.double().numpy()
    loss = CBiFLLoss(BMVC2020_CLASS_WEIGHTS, alpha=2.0)
    naive = [
        _cb_ifl_naive(z, target, weights, g, alpha=2.0)
        for z, g in zip(seq, [0.0, 0.1, 0.2], strict=True)
    ]
    assert float(loss(seq, target)) == pytest.approx(sum(naive), rel=1e-6)
    for t, z in enumerate(seq, start=1):
        assert float(loss(z, target, t)) == pytest.approx(naive[t - 1], rel=1e-6)
    assert loss.gamma(3) == pytest.approx(0.2)
    assert "class_weights" in dict(loss.named_buffers())
    ones = np.ones(20)
    expected = _cb_ifl_naive(seq[0], target, ones, 0.0) + _cb_ifl_naive(seq[1], target, ones, 0.1)
    assert float(IFLLoss()(seq[:2], target)) == pytest.approx(expected, rel=1e-6)
    # reduction "mean": the mean over all valid pixels (one image of all valid pixels = per image)
    flat_logits = logits.permute(1, 0, 2, 3).reshape(1, 20, 1, -1)
    flat_target = target.reshape(1, 1, -1)
    expected = _cb_ifl_naive(flat_logits, flat_target, ones, 0.5)
    got = FocalLoss(0.5, reduction="mean")(logits, target)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_count_pixels():
    target = torch.tensor([[0, 2, 2], [255, 1, 2]])
    assert count_pixels(target, 4).tolist() == [1, 1, 3, 0]
