"""Two-stage training: stage 1 (structure encoder + UNet, optionally the VAE) and
stage 2 (the appearance-matching adapter only). Batch sources in ``data``, the
shared optimisation loop in ``loop``, checkpoints in ``checkpoints``."""
