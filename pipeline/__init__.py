"""Builds the augment graph from options (``pipeline.augment_graph``) and picks the runner.

A regular package (not a namespace one) so that ``setup.py``'s ``find_packages``
ships it: Beam workers (Dataflow ``--setup_file``, Dask workers, ``pip install .``)
unpickle graph functions that live here.
"""
