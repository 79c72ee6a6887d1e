"""The `edgeatlas` command: a thin layer that builds objects and calls them.

Domain errors become one line on stderr and an exit code here, and only here. Rooms are imported
lazily, so a device with only the agent extra can run `edgeatlas agent ...`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edgeatlas.console.cli import admin, agent, predictor, serve
from edgeatlas.console.cli.common import EXIT_INPUT, EXIT_UNAVAILABLE
from edgeatlas.protos import errors

SUBJECTS = (serve, agent, admin, predictor)  # each registers its own subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeatlas", description="Federated benchmarking of AI inference.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for subject in SUBJECTS:
        subject.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except errors.Unavailable as exc:
        print(f"edgeatlas: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except errors.EdgeAtlasError as exc:
        print(f"edgeatlas: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("edgeatlas: interrupted", file=sys.stderr)
        return 130
