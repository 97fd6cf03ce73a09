"""``emstreamd`` / ``python -m emstreamd``: learn a Gaussian mixture from a stream of numbers.

Exit codes: 0 after a clean stop (end of --input, SIGTERM, SIGINT), 78 for a configuration error,
1 for any other error that stops it (an unreadable input or checkpoint, or a per-point output
whose reader went away: then after a final checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from emstream.checkpoint import CheckpointError

from . import config as config_module
from .loop import Daemon
from .sources import FileInput, FollowInput, StdinInput

EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emstreamd", description="Learn a Gaussian mixture online from a stream of numbers "
        "(stdin, or a file with --input), label and score each point, and checkpoint so that a "
        "restart resumes without losing or repeating data.")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration (see config.yaml)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="PATH", help="read this file to its end (back-fill)")
    source.add_argument("--follow", metavar="PATH",
                        help="follow this growing file like tail -F (rotation, truncation)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="checkpoint directory, or a .json file (overrides checkpoint.path)")
    parser.add_argument("--output", metavar="PATH",
                        help="per-point output file, - for stdout (overrides output.path)")
    parser.add_argument("--no-output", action="store_true", help="no per-point output")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one configuration value (YAML syntax), repeatable")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def _overrides(args) -> list:
    overrides = [config_module.parse_override(text) for text in args.set]
    if args.checkpoint:
        overrides.append(("checkpoint", "path", args.checkpoint))
    if args.output:
        overrides.append(("output", "path", args.output))
    if args.no_output:
        overrides.append(("output", "per_point", False))
    return overrides


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s emstreamd %(levelname)s %(message)s")
    try:
        overrides = _overrides(args)
        config = config_module.load(args.config, overrides)
    except config_module.ConfigError as exc:
        print(f"emstreamd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        if args.follow:
            source = FollowInput(args.follow)
        else:
            source = FileInput(args.input) if args.input else StdinInput()
    except OSError as exc:
        print(f"emstreamd: cannot open input {args.input}: {exc.strerror}", file=sys.stderr)
        return 1
    out = None
    if config["output"]["per_point"]:
        out = sys.stdout.buffer if config["output"]["path"] == "-" else open(
            config["output"]["path"], "ab")
    daemon = Daemon(config, source, reload=lambda: config_module.load(args.config, overrides),
                    out=out)
    try:
        daemon.resume()
        code = daemon.run()
    except CheckpointError as exc:
        print(f"emstreamd: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    print(daemon.summary(), file=sys.stderr)
    return code


def run() -> None:
    """The command: :func:`main`, then exit without the interpreter's teardown.

    Freeing scipy's and pyarrow's modules at exit takes ~0.2 s here, longer than a small
    back-fill.  Everything that must outlive the process is written by then: checkpoints are
    fsynced and renamed, the per-point output file is closed, threads are joined; what is left
    is flushed below.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
