"""Command-line options that make training runs small enough for tests (shared by test files)."""

# finetune: the paper's recipe (its GAN path), 64² crops, batch 2, two 32² patches, a narrow
# discriminator
# fmt: off
FINETUNE = [
    "--preset", "paper",
    "--crop", "64", "--batch-size", "2", "--patch-size", "32", "--patches", "2",
    "--data", "photos", "--no-tensorboard", "--threads", "1", "--ndf", "8",
    "--lambda-a", "0.01", "--lr", "1e-3",
]
# fmt: on
