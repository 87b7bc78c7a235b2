"""Silence start-up notices that say nothing about the run.

Beam logs through the root logger, at import time, that the BigQuery client
libraries are missing (the job uses no BigQuery), and at every model load, that
memory usage cannot be fetched (its model manager needs scipy, which the job
does not use). A new user reads them as problems; they hide what matters. The
filter must be installed before ``apache_beam`` is imported.
"""

from __future__ import annotations

import logging

IRRELEVANT_NOTICES = (
    "apitools not found, and bigquery client libraries are not available",
    "Resource module is not available for current platform",
)


class _IrrelevantNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(IRRELEVANT_NOTICES)


def silence_startup_notices() -> None:
    """Drop ``IRRELEVANT_NOTICES`` from the root logger of this process (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(f, _IrrelevantNotices) for f in root.filters):
        root.addFilter(_IrrelevantNotices())
