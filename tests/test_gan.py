"""PatchGAN discriminator, adversarial losses and paired patch sampling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from icmbridge.errors import InputError
from icmbridge.gan import (
    GANLoss,
    PatchDiscriminator,
    extract_patches,
    gradient_penalty,
    init_weights_normal,
    output_size,
    paired_patches,
    r1_penalty,
    receptive_field,
    sample_patch_boxes,
)

NORMS = ["batch", "instance", "spectral", "none"]


# --------------------------------------------------------------------------------- discriminator
@pytest.mark.parametrize("norm", NORMS)
def test_discriminator_output_shapes(norm: str) -> None:
    torch.manual_seed(0)
    d = init_weights_normal(PatchDiscriminator(ndf=8, norm=norm))  # type: ignore[arg-type]
    for p, side in ((32, 2), (64, 6), (128, 14)):
        out = d(torch.rand(2, 3, p, p))
        assert out.shape == (2, 1, side, side) == (2, 1, output_size(p), output_size(p))
    assert receptive_field(3) == 70 and d.receptive_field == 70


def test_discriminator_layout_matches_pix2pix() -> None:
    d = PatchDiscriminator()  # ndf 64, 3 layers, BatchNorm
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert convs[1].bias is None and convs[0].bias is not None  # BN makes the bias redundant
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    relus = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(relus) == 4 and all(m.negative_slope == 0.2 for m in relus)


def test_init_statistics() -> None:
    torch.manual_seed(0)
    d = init_weights_normal(PatchDiscriminator(norm="batch"))
    weights = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.mean().item()) < 1e-3 and weights.std().item() == pytest.approx(
        0.02, rel=0.02
    )
    bn = torch.cat([m.weight for m in d.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() < 0.03
    assert all(
        (m.bias == 0).all() for m in d.modules() if isinstance(m, nn.Conv2d) and m.bias is not None
    )
    sn = init_weights_normal(PatchDiscriminator(norm="spectral", ndf=8))
    first = sn.model[0].parametrizations.weight.original
    assert first.std().item() == pytest.approx(0.02, rel=0.3)


def test_conditional_discriminator() -> None:
    d = PatchDiscriminator(ndf=8, norm="instance", cond_channels=5)
    latent = torch.rand(2, 5, 4, 4)  # e.g. ŷ of a 64² patch, upsampled inside D
    assert d(torch.rand(2, 3, 64, 64), latent).shape == (2, 1, 6, 6)
    with pytest.raises(InputError, match="conditioned"):
        d(torch.rand(2, 3, 64, 64))
    with pytest.raises(InputError, match="unconditional"):
        PatchDiscriminator(ndf=8)(torch.rand(1, 3, 64, 64), latent)


def test_discriminator_rejects_bad_inputs() -> None:
    with pytest.raises(InputError, match="norm"):
        PatchDiscriminator(norm="layer")  # type: ignore[arg-type]
    d = PatchDiscriminator(ndf=8)
    with pytest.raises(InputError, match="too small"):
        d(torch.rand(1, 3, 16, 16))
    with pytest.raises(InputError, match="expects"):
        d(torch.rand(1, 1, 64, 64))


# ----------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "hinge"])
def test_discriminator_loss_prefers_a_good_discriminator(mode: str) -> None:
    loss = GANLoss(mode)  # type: ignore[arg-type]
    hi, lo = torch.full((4, 1, 6, 6), 3.0), torch.full((4, 1, 6, 6), -3.0)
    good = loss.discriminator_loss(real_logits=hi, fake_logits=lo)
    bad = loss.discriminator_loss(real_logits=lo, fake_logits=hi)
    assert good < bad
    # and the generator wants its fakes to look real
    assert loss.generator_loss(hi) < loss.generator_loss(lo)


def test_lsgan_values() -> None:
    loss = GANLoss("lsgan")
    ones, zeros = torch.ones(2, 1, 6, 6), torch.zeros(2, 1, 6, 6)
    assert loss.generator_loss(ones).item() == 0.0  # at its target
    assert loss.discriminator_loss(ones, zeros).item() == 0.0
    assert loss.discriminator_loss(zeros, ones).item() == pytest.approx(1.0)  # ½(1 + 1)


def test_vanilla_is_bce_with_logits() -> None:
    loss = GANLoss("vanilla")
    z = torch.zeros(3, 1, 2, 2)
    ln2 = torch.log(torch.tensor(2.0)).item()
    assert loss.generator_loss(z).item() == pytest.approx(ln2)
    assert loss.discriminator_loss(z, z).item() == pytest.approx(ln2)
    big = torch.full_like(z, 50.0)  # stable far from 0 (no sigmoid overflow)
    assert loss.discriminator_loss(big, -big).item() == pytest.approx(0.0, abs=1e-6)


def test_hinge_values() -> None:
    loss = GANLoss("hinge")
    z = torch.zeros(2, 1, 3, 3)
    assert loss.discriminator_loss(z, z).item() == pytest.approx(1.0)  # ½(relu(1) + relu(1))
    assert loss.discriminator_loss(z + 1, z - 1).item() == 0.0  # margins met
    assert loss.discriminator_loss(z + 5, z - 5).item() == 0.0  # no reward beyond the margin
    assert loss.generator_loss(z + 2).item() == -2.0


def test_unknown_mode() -> None:
    with pytest.raises(InputError, match="mode"):
        GANLoss("wgan")  # type: ignore[arg-type]


def test_r1_penalty_positive_and_differentiable() -> None:
    torch.manual_seed(0)
    d = init_weights_normal(PatchDiscriminator(ndf=8, norm="none"))
    real = torch.rand(2, 3, 32, 32).requires_grad_(True)
    penalty = r1_penalty(d(real), real)
    assert penalty.item() > 0
    penalty.backward()
    assert d.model[0].weight.grad is not None and d.model[0].weight.grad.abs().sum() > 0
    with pytest.raises(InputError, match="requires_grad"):
        r1_penalty(d(torch.rand(1, 3, 32, 32)), torch.rand(1, 3, 32, 32))


def test_gradient_penalty_differentiable_and_seeded() -> None:
    torch.manual_seed(0)
    d = init_weights_normal(PatchDiscriminator(ndf=8, norm="none"))
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    gp = gradient_penalty(d, real, fake, generator=torch.Generator().manual_seed(1))
    again = gradient_penalty(d, real, fake, generator=torch.Generator().manual_seed(1))
    assert gp.item() > 0 and gp.item() == again.item()
    gp.backward()
    assert d.model[0].weight.grad is not None


# ---------------------------------------------------------------------------------------- patches
def test_boxes_within_bounds_and_seeded() -> None:
    boxes = sample_patch_boxes(4, 70, 100, 64, 5, torch.Generator().manual_seed(0))
    assert boxes.shape == (4, 5, 2) and boxes.dtype == torch.int64
    assert boxes.min() >= 0
    assert (boxes[..., 0] + 64).max() <= 70 and (boxes[..., 1] + 64).max() <= 100
    same = sample_patch_boxes(4, 70, 100, 64, 5, torch.Generator().manual_seed(0))
    other = sample_patch_boxes(4, 70, 100, 64, 5, torch.Generator().manual_seed(1))
    assert torch.equal(boxes, same) and not torch.equal(boxes, other)
    # the full-size patch has exactly one place to go
    assert (sample_patch_boxes(2, 64, 64, 64, 3, torch.Generator()) == 0).all()


def test_boxes_cover_the_whole_range() -> None:
    boxes = sample_patch_boxes(64, 36, 36, 32, 8, torch.Generator().manual_seed(0))
    assert set(boxes.flatten().tolist()) == {0, 1, 2, 3, 4}


def test_too_large_patch_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"patch size 128 does not fit in images of 64×96"):
        sample_patch_boxes(1, 64, 96, 128, 3, torch.Generator())


def test_extract_same_positions_and_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 40, generator=g)
    x_hat = (x + 0.1).requires_grad_(True)
    boxes = sample_patch_boxes(2, 48, 40, 16, 3, g)
    px, ph = extract_patches(x, boxes, 16), extract_patches(x_hat, boxes, 16)
    assert px.shape == ph.shape == (6, 3, 16, 16)
    torch.testing.assert_close(ph, px + 0.1)  # the same pixels of x and x̂
    t, l = boxes[1, 2].tolist()
    torch.testing.assert_close(px[1 * 3 + 2], x[1, :, t : t + 16, l : l + 16])  # order b·n + k
    ph.sum().backward()
    assert x_hat.grad is not None
    covered = torch.zeros(2, 48, 40)
    for b in range(2):
        for t, l in boxes[b].tolist():
            covered[b, t : t + 16, l : l + 16] += 1
    torch.testing.assert_close(x_hat.grad, covered[:, None].expand(-1, 3, -1, -1))


def test_paired_patches_and_bad_boxes() -> None:
    x = torch.rand(3, 3, 64, 64)
    px, ph = paired_patches(x, x.clone(), 32, 2, torch.Generator().manual_seed(4))
    assert px.shape == (6, 3, 32, 32) and torch.equal(px, ph)
    with pytest.raises(InputError, match="outside"):
        extract_patches(x, torch.full((3, 1, 2), 40), 32)
    with pytest.raises(InputError, match="shape"):
        extract_patches(x, torch.zeros(2, 1, 2, dtype=torch.long), 32)


# ---------------------------------------------------------------------------------- D health
def test_auc_values() -> None:
    from icmbridge.gan.health import auc

    assert auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert auc(torch.ones(5), torch.ones(7)) == 0.5  # ties: chance
    assert auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0])) == 0.5
    with pytest.raises(InputError, match="at least one"):
        auc(torch.ones(0), torch.ones(2))


def test_health_warning_only_for_a_sick_discriminator() -> None:
    from icmbridge.gan.health import health_warning

    assert health_warning(0.85, 300) is None
    message = health_warning(0.52, 300)
    assert message is not None and "0.52" in message and "300 D updates" in message


def test_health_scores_in_eval_mode_on_fixed_pairs(tiny_codec) -> None:
    """A BatchNorm D that tells *batches* apart (train mode) is scored per patch in eval mode,
    with the decoder's current output, and both modules are put back as they were."""
    from icmbridge.gan.health import build_health_set, crops_from_images, measure_health

    torch.manual_seed(0)
    images = [torch.rand(3, 80, 100), torch.rand(3, 40, 40)]  # the second is too small: skipped
    crops = crops_from_images(images, 64, 4, seed=3)
    assert crops.shape == (4, 3, 64, 64)
    assert torch.equal(crops, crops_from_images(images, 64, 4, seed=3))
    with pytest.raises(InputError, match="at least 128"):
        crops_from_images(images, 128, 2)
    health = build_health_set(tiny_codec, images, 64, 32, 2, count=4, seed=0)
    assert health.pairs == 8 and health.y_hat.shape[0] == 4
    disc = init_weights_normal(PatchDiscriminator(ndf=8, norm="batch")).train()
    g_s = tiny_codec.g_s.train()
    h = measure_health(disc, g_s, health)
    assert set(h) == {"auc", "paired", "real", "fake"} and 0 <= h["auc"] <= 1
    assert disc.training and g_s.training
    running = disc.model[3].running_mean.clone()
    assert torch.equal(running, disc.model[3].running_mean)  # eval mode: no statistics moved
    assert measure_health(disc, g_s, health) == h  # fixed pairs: the same score twice
