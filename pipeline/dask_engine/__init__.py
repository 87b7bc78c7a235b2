"""The augment job on a dask.distributed cluster: Beam's DaskRunner with this project's
graph translation.

``select`` picks the runner object from ``--runner`` (and imports nothing of dask);
``runner`` is the runner (``DaskRunner``, its result, metrics, progress lines);
``translation`` turns a Beam graph into a dask task graph, fixing what Beam's own
translation loses (listed there). Both lean on Beam internals of the version named in
``runner.SUPPORTED_BEAM``: another Beam is refused at launch until
``tests/test_dask_cluster.py::test_the_beam_bugs_the_translation_works_around_are_still_in_beams_own_runner``
(each Beam bug the translation works around, run on Beam's own runner) says which remain.
"""
