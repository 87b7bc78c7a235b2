"""Command lines (``python -m jobs.NAME``): thin wrappers that parse options and call the library.

A regular package so that ``pip install .`` ships it with the rest (see ``pipeline``).
"""
