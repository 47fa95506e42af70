"""PatchGAN finetuning building blocks: discriminator, adversarial losses, paired patch sampling."""

from icmbridge.gan.discriminator import (
    LatentConditionedDiscriminator,
    PatchDiscriminator,
    init_weights_normal,
    latent_patches,
    min_input_size,
    output_size,
    receptive_field,
)
from icmbridge.gan.losses import GANLoss, gradient_penalty, r1_penalty
from icmbridge.gan.patches import extract_patches, paired_patches, sample_patch_boxes

__all__ = [
    "GANLoss",
    "LatentConditionedDiscriminator",
    "PatchDiscriminator",
    "extract_patches",
    "gradient_penalty",
    "init_weights_normal",
    "latent_patches",
    "min_input_size",
    "output_size",
    "paired_patches",
    "r1_penalty",
    "receptive_field",
    "sample_patch_boxes",
]
