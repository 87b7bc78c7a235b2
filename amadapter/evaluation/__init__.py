"""Evaluation of generated samples: FID and KID in a chosen feature space, CLIP-I against
the exemplars, layout agreement (mIoU of a segmenter's prediction against the target
labels), per-class pixel statistics, and the HTML report. Pure PyTorch + numpy: callers
read the files (``jobs.evaluate``)."""
