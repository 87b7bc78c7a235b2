"""The namespace of the augment job's Beam metrics (counters and distributions), which
``jobs.augment`` reads back for its summary."""

METRICS_NAMESPACE = "augment"
