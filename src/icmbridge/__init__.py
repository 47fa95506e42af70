"""icmbridge: learned image coding for machines that humans can look at too.

One bitstream, two decoders: the machine decoder of an ICM codec trained for rate + task loss, and
the human decoder obtained by finetuning its first synthesis layers against a PatchGAN
discriminator (Le et al., ICIP 2022). Encoder and entropy models are shared and frozen.
"""

__version__ = "0.1.0"
