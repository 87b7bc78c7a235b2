"""Beam PTransforms and DoFns: read label maps, retrieve exemplars, synthesise, write shards.

Depends on ``storage`` (files, layouts, formats) and ``amadapter`` (the model and
library), never the other way round.
"""
