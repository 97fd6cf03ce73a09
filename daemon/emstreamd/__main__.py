"""``emstreamd`` / ``python -m emstreamd``: learn a Gaussian mixture from a stream of numbers.

Exit codes (sysexits.h): 0 a clean stop (end of --input, SIGTERM, SIGINT); 1 a per-point output
whose reader went away (no checkpoint past the last line written); 64 a usage error; 65 input
the daemon cannot read as it is (UTF-16, compressed on stdin) or no usable checkpoint; 66 the
--input file cannot be opened; 73 a path the configuration names cannot be written
(permissions, read-only file system), or the final checkpoint could not be written; 74 an I/O
error while running; 75 another daemon holds the checkpoint; 78 a configuration error (a
metrics port in use too). Each is one line on stderr.
"""

from __future__ import annotations

import os
import sys

from . import early, stdfds

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "emstreamd":
    early.catch()  # before the imports below: a signal during them must not kill us unannounced
    stdfds.plug()  # before anything is opened: no file may take a closed stream's number

import argparse  # noqa: E402
import logging  # noqa: E402

from emstream import __version__
from emstream.checkpoint import CheckpointError
from emstream.compressed import compression

from . import config as config_module
from . import logs, preflight, safeyaml, summary
from .keyed import KeyedDaemon
from .loop import Daemon
from .progress import Progress
from .sinks import say_if_waiting_for_a_reader
from .sources import FileInput, FollowInput, StdinInput, not_regular

EX_USAGE, EX_DATAERR, EX_NOINPUT = os.EX_USAGE, os.EX_DATAERR, os.EX_NOINPUT  # 64, 65, 66
EX_CANTCREAT, EX_IOERR = os.EX_CANTCREAT, os.EX_IOERR  # 73, 74
EX_CONFIG = os.EX_CONFIG  # 78

log = logging.getLogger("emstreamd")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """A usage error exits 64 (EX_USAGE), not argparse's 2."""
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emstreamd", description="Learn a Gaussian mixture online from a stream of numbers "
        "(stdin, or a file with --input or --follow), label and score each point, and "
        "checkpoint so that a restart resumes without losing or repeating data.",
        epilog="Exit codes: 0 clean stop, 1 per-point output closed by its reader, 64 usage, "
        "65 unreadable input data (UTF-16, compressed on stdin) or no usable checkpoint, 66 --input cannot be opened, 73 a configured path (or the "
        "final checkpoint) cannot be written, 74 I/O error, 75 another daemon holds the "
        "checkpoint, 78 configuration error.")
    parser.add_argument("--version", action="version", version=f"emstreamd {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML configuration; its values replace the shipped defaults "
                        "(emstreamd.schema, documented in config.yaml) key by key")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration and the paths it names, print the "
                        "effective configuration as YAML and exit (0, or 78 with one line)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="PATH", help="read this file to its end (back-fill; "
                        "gzip, bzip2 and xz files are read decompressed)")
    source.add_argument("--follow", metavar="PATH",
                        help="follow this growing file like tail -F (rotation, truncation)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="checkpoint directory, or a .json file (overrides checkpoint.path)")
    parser.add_argument("--output", metavar="PATH",
                        help="per-point output file, - for stdout (overrides output.path)")
    parser.add_argument("--no-output", action="store_true",
                        help="no per-point output (sets output.per_point: false)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one configuration value (YAML syntax), repeatable")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="least severe log records shown (default: %(default)s)")
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="text lines (without the time under journald), or one JSON "
                        "object per line: time, level, message and fields "
                        "(default: %(default)s)")
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


def _configure(args, overrides) -> tuple[dict | None, int]:
    """The validated configuration, its paths checked; or None and the exit code (logged)."""
    try:
        config = config_module.load(args.config, overrides)
        preflight.check_paths(config)
        preflight.check_distinct(config, args.follow or args.input, args.config)
        # A running daemon holds the port: --check-config only resolves the address.
        preflight.check_metrics_address(config, bind=not args.check_config)
    except config_module.ConfigError as exc:
        return _fail(f"configuration error: {exc}", EX_CONFIG)
    except preflight.CannotCreate as exc:
        return _fail(str(exc), EX_CANTCREAT)
    return config, 0


def _fail(message: str, code: int) -> tuple[None, int]:
    logs.fatal(message, exit_code=code)
    return None, code


def _effective(config: dict, args) -> str:
    origin = f"{args.config} over the shipped defaults" if args.config else "the shipped defaults"
    return (f"# emstreamd {__version__}: effective configuration ({origin}, --set and options "
            "applied)\n" + safeyaml.dump(config, sort_keys=False, default_flow_style=None,
                                         allow_unicode=True))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("config", "input", "follow", "checkpoint", "output"):
        if getattr(args, flag) == "":
            # (``--input "$FILE"`` with FILE unset read stdin, or ./emstreamd-state was used,
            # and the run looked like a success)
            parser.error(f"--{flag} names no path (an empty string)")
    logs.setup(args.log_level, args.log_format)
    try:
        return _main(args)
    except early.Stop:  # (SIGTERM/SIGINT before the loop ran: nothing was learned)
        log.info("stopped while starting")
        return 0


def _main(args) -> int:
    if early.caught:
        early.main()
    try:
        overrides = _overrides(args)
    except config_module.ConfigError as exc:
        return _fail(f"configuration error: {exc}", EX_CONFIG)[1]
    config, code = _configure(args, overrides)
    if config is None:
        return code
    if args.check_config:
        if "stdout" in stdfds.closed:  # (written to the /dev/null in its place: exit 0)
            return _fail("--check-config: standard output is closed", EX_CANTCREAT)[1]
        try:
            sys.stdout.write(_effective(config, args))
            sys.stdout.flush()
        except OSError as exc:  # (a full disk, /dev/full: a traceback)
            return _fail(f"--check-config: cannot write standard output: "
                         f"{exc.strerror or exc}", EX_IOERR)[1]
        return 0
    path = args.follow or args.input
    if path is None and "stdin" in stdfds.closed:
        # (read as an empty input: a checkpoint of nothing, exit 0, not a word)
        return _fail("standard input is closed: pipe the stream in (... | emstreamd), or "
                     "name a file with --input or --follow", EX_NOINPUT)[1]
    try:
        if args.follow and compression(args.follow):
            return _fail(f"--follow {args.follow}: the file is {compression(args.follow)}-"
                         "compressed; follow the plain file, or back-fill this one with "
                         "--input", EX_USAGE)[1]
        if args.follow:
            output = config["output"]["path"] if config["output"]["per_point"] else None
            source = FollowInput(args.follow, own=(config["input"]["dead_letter"],
                                                   None if output == "-" else output))
        elif args.input and (kind := not_regular(args.input)) is not None:
            # (a FIFO blocked the start without a word, then failed as "not seekable";
            # /dev/zero was read for ever, at full speed, into nothing)
            return _fail(f"--input {args.input}: is {kind}, not a regular file: --input "
                         "back-fills a file, from where a restart stopped; pipe a stream to "
                         "standard input instead (... | emstreamd)", EX_NOINPUT)[1]
        else:
            source = FileInput(args.input) if args.input else StdinInput()
    except OSError as exc:
        return _fail(f"cannot open input {path}: {exc.strerror or exc}", EX_NOINPUT)[1]
    out = None
    if config["output"]["per_point"]:
        if config["output"]["path"] == "-" and "stdout" in stdfds.closed:
            source.close()
            return _fail("output.path '-': standard output is closed; name a file in "
                         "output.path, or use --no-output", EX_CANTCREAT)[1]
        if config["output"]["path"] != "-":
            say_if_waiting_for_a_reader("output.path", config["output"]["path"])
        try:
            out = sys.stdout.buffer if config["output"]["path"] == "-" else open(
                config["output"]["path"], "ab")
        except OSError as exc:
            source.close()
            return _fail(f"output.path: cannot open {config['output']['path']}: "
                         f"{exc.strerror or exc}", EX_CANTCREAT)[1]
    log.info("emstreamd %s: configuration %s; checkpoints in %s", __version__,
             args.config or "(shipped defaults)",
             os.path.abspath(config["checkpoint"]["path"]))
    kind = Daemon if config["input"]["key"] is None else KeyedDaemon
    daemon = kind(config, source, out=out,
                  reload=lambda: config_module.reload(args.config, overrides))
    try:
        daemon.resume()
        at_start = summary.snapshot(daemon.counters)
        if args.input:
            handle = daemon.source.handle
            daemon.progress = Progress(args.input, daemon.source.offset, in_file=None if
                                       handle.compression is None else handle.in_file)
        code = daemon.run()
    except CheckpointError as exc:  # with its own exit_code when it says why it stops
        return _fail(str(exc), getattr(exc, "exit_code", EX_DATAERR))[1]
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"I/O error: {where}{exc.strerror or exc}", EX_IOERR)[1]
    finally:
        daemon.source.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    text, fields = summary.build(daemon, at_start)
    logs.report(text, **fields)
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
