"""Beam PTransforms and DoFns: read label maps, retrieve exemplars, synthesise, write shards.

Depends on ``amadapter`` (the model and pure-numpy library), never the other way round.
"""
