"""The ``greenlight`` command.

    greenlight serve                 run the bridge
    greenlight submit SHOT --watch   upload a .glshot, stream frames + MP4 + report
    greenlight jobs | cancel JOB | report JOB
    greenlight shot sample OUT | shot inspect FILE
    greenlight demo                  the whole loop on this machine, in one process

Exit codes: 0 done, 1 the job failed or was cancelled, 2 bad input or the
bridge refused the request, 3 the bridge could not be reached.

One module per command group, each with its parser beside its handlers:
``serve``, ``submit`` (submit, jobs, cancel, run-now, plan, report),
``shot`` (shot sample/inspect/usd, otio), ``render``, ``models``, ``demo``;
``common`` holds the client options, exit codes, streaming and the report
summary they share.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import GreenlightError, exit_code
from . import demo, keys, models, purge, render, replay, serve, shot, storyboard, submit, token

# The MP4 writer runs ffmpeg as a subprocess while gRPC threads are alive;
# gRPC's fork handlers are for forked Python workers, which we never use.
# (Set before any command imports grpc: the modules above import it lazily.)
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

# In the order ``greenlight --help`` lists them.
COMMAND_MODULES = (serve, token, keys, submit, purge, replay, shot, render, storyboard, models, demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="greenlight", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GreenlightError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return exit_code(exc)
