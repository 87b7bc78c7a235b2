"""Export the procedural driving world in the Cityscapes layout.

    python -m jobs.make_world --out data/world --n 500 --split train --size 64x128 \\
        [--world-version 2] [--world-domain night]

World v1 (the default) gives every class one appearance per style; v2 varies appearance
within a class (``amadapter.world.v2``) and writes instance maps too. ``--world-domain``
draws the styles of an appearance domain (day, night, fog: ``amadapter.world.domains``)
instead of the default uniform palettes; the layouts are the same in every domain.
"""

from __future__ import annotations

import argparse
import time

from amadapter.world import SPLIT_SEEDS
from amadapter.world.domains import DOMAIN_NAMES
from amadapter.world.export import export_world
from amadapter.world.versions import WORLD_VERSIONS
from pipeline.option_values import parse_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to create (Cityscapes layout)")
    parser.add_argument("--n", type=int, required=True, help="number of scenes")
    parser.add_argument("--split", default="train", choices=sorted(SPLIT_SEEDS))
    parser.add_argument("--size", type=parse_size, default=(64, 128), help="HxW, e.g. 64x128")
    parser.add_argument("--start", type=int, default=0, help="index of the first seed within the split")
    parser.add_argument("--world-version", type=int, default=1, choices=WORLD_VERSIONS)
    parser.add_argument("--world-domain", default=None, choices=DOMAIN_NAMES,
                        help="appearance domain of the styles (default: uniform palettes)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    stems = export_world(args.out, args.n, args.split, *args.size, start=args.start, version=args.world_version,
                         domain=args.world_domain)
    domain = f" {args.world_domain}" if args.world_domain else ""
    print(f"wrote {len(stems)} {args.split} world v{args.world_version}{domain} scenes of {args.size[0]}x{args.size[1]} to {args.out} "
          f"in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
