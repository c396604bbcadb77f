"""Command line: ``python -m mmtutorial doctor`` | ``download fashion-mnist`` | ``prepare-data``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmtutorial", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="versions, device, cache, QUICK mode, offline data and models")
    download = commands.add_parser("download", help="download a data set (needs internet)")
    download.add_argument("dataset", choices=["fashion-mnist"])
    commands.add_parser("prepare-data", help="fill the cache from the offline sources (Debian packages)")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .doctor import report
        text, ok = report()
        print(text)
        return 0 if ok else 1
    from . import data
    if args.command == "download":
        root = data.fashion_mnist_root(download=True)
        print(f"Fashion-MNIST ready in {root}")
        return 0
    if args.command == "prepare-data":
        prepared = []
        for name, prepare in (("Fashion-MNIST", data.fashion_mnist_root), ("KJV Bible", data.kjv_bible)):
            try:
                prepare()
                prepared.append(name)
            except data.DataNotFoundError as error:
                print(f"skipped {name}: {error}", file=sys.stderr)
        print(f"prepared: {', '.join(prepared) or 'nothing'}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
