"""A quick look at an augment run: contact sheet PNG + HTML page of its first samples.

    python -m jobs.preview out/augment [--count 8] [--prefix aug]

What the rows show and where the files go: ``storage.preview``.
"""

from __future__ import annotations

import argparse

from pipeline.options import DEFAULT_SHARD_PREFIX
from storage.preview import write_preview


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", help="the augment job's --output folder")
    parser.add_argument("--count", type=int, default=8, help="samples to show")
    parser.add_argument("--prefix", default=DEFAULT_SHARD_PREFIX, help="the job's --shard-prefix")
    args = parser.parse_args(argv)
    written = write_preview(args.output, args.count, args.prefix)
    if written is None:
        raise SystemExit(f"no samples in {args.output} (shards {args.prefix}-*.tar)")
    print(f"preview: {written[0]}\n         {written[1]}")


if __name__ == "__main__":
    main()
