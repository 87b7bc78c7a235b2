"""Sampling: the AM-Adapter pipeline, exemplar inversion and its cache, structure guidance,
the exemplar forward, exemplar paths and regions, model presets, content hashes."""
