"""Files, dataset layouts and the job's file formats, apart from any Beam pipeline.

File access through Beam's ``FileSystems`` (``fileio``: local, gs://, s3://, atomic
writes); the datasets' layouts (``label_sources``, ``photo_sources``, ``exemplar_pool``,
``training_frames``); reading one input (``input_reads``); the records passed around
(``records``); the shard, manifest and fingerprint formats (``shards``, ``manifest``,
``fingerprint``). Used by the Beam transforms and by the torch training jobs alike;
depends on ``amadapter`` only.
"""
