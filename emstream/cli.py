"""The ``emstream`` command: fit, score, inspect and diff checkpoints.

Exit codes: 0 success, 1 a bad or unreadable file (one line on stderr, no traceback), 2 usage.
Run ``emstream SUBCOMMAND --help`` for each subcommand's options.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, checkpoint
from .checkpoint import CheckpointError
from .compare import full_covariances, match_components
from .compressed import MAGIC, DataFile
from .episodes import DEFAULT_THRESHOLD
from .mixture import MAX_ITER, GaussianMixture
from .parse import blank_byte_order_marks, key_text, parse_lines
from .report import format_rows
from .stats import COVARIANCE_TYPES
from .records import layout_from_dict
from .table import LayoutError, of_key, parse_stream
from .temporal import TemporalFeatures
from .terminal import printable

SHOWN_REJECTS = 5
# fit --dask-scheduler: bytes per parsing task, bytes read to learn the number of fields.
DASK_BLOCK_BYTES = 64 << 20
DASK_SAMPLE_BYTES = 64 << 10
PARQUET_SUFFIXES = (".parquet", ".pq")


class CommandError(Exception):
    """A problem to report in one line with exit code 1."""


class UsageError(Exception):
    """A bad option, reported in one line with exit code 2 (as argparse does)."""


# ---------------------------------------------------------------------------- input
def _open_input(name: str):
    if name == "-":
        stream = sys.stdin.buffer
        # (compressed bytes on a pipe were read as text: five lines of binary junk rejected as
        # invalid utf-8, then "no numeric rows found"; a file by name is read decompressed)
        head = stream.peek(8)[:8] if hasattr(stream, "peek") else b""
        kind = next((kind for magic, kind in MAGIC if head.startswith(magic)), None)
        if kind is not None:
            tool = {"gzip": "zcat", "bzip2": "bzcat", "xz": "xzcat"}.get(kind, "zstd -dc")
            readable = kind != "zstd"  # (the 3.11 standard library has no zstd)
            raise CommandError(f"standard input is {kind}-compressed: decompress it first "
                               f"({tool} FILE | emstream ...)" + (
                                   ", or give the file's name, which is read decompressed"
                                   if readable else ""))
        return stream
    try:
        return DataFile(name)  # (decompressed, if it is gzip, bzip2 or xz)
    except OSError as exc:
        raise CommandError(f"{name}: cannot open ({exc.strerror or exc})") from None


def _add_view_options(command, plot_help: str) -> None:
    """``--json``, ``--plot FILE.png`` and ``--features``: how inspect and diff show a model."""
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.add_argument("--plot", metavar="FILE.png", help=plot_help)
    command.add_argument("--features", type=_parse_indices, metavar="I,J,...",
                         help="--plot only these features (0-based; at most 8)")


def _parse_indices(text: str | None):
    if text is None:
        return None
    try:
        columns = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants 0-based indices like 0,2; got {text!r}")
    if any(c < 0 for c in columns):
        raise argparse.ArgumentTypeError("indices must be >= 0")
    return columns


def _parse_columns(text: str | None):
    """Columns as ``input.columns`` names them: 0-based indices or header names (for JSON
    lines, field names), e.g. ``0,2`` or ``value`` or ``cpu,mem``."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"wants indices or names like 0,2 or cpu,mem; got "
                                         f"{text!r}")
    if any(part.startswith("-") and part[1:].isdigit() for part in parts):
        raise argparse.ArgumentTypeError("indices must be >= 0")
    columns = [_column(part) for part in parts]
    twice = sorted({str(c) for c in columns if columns.count(c) > 1})
    if twice:  # (a model of one column twice over: every component degenerate)
        raise argparse.ArgumentTypeError(f"names {', '.join(twice)} twice; each column once")
    return columns


def _column(text: str):
    """A column as input.key names it: a 0-based index, or a header name."""
    return int(text) if text.isdigit() else text


def _score_level(text: str) -> float:
    """A score threshold: a number strictly between 0 and 1 (-log10(1 - t) is drawn)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"wants a score strictly between 0 and 1, got {text!r}")
    return value


# The most a count argument may ask for (SQLite's LIMIT takes a 64-bit integer).
MAX_COUNT = 2 ** 63 - 1


def _positive_int(text: str, most: int = MAX_COUNT) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"wants a whole number from 1 to {most}, got "
                                         f"{text[:40]!r}")
    return value


def _iterations(text: str) -> int:
    """``--max-iter``: 1 to the model's own bound (0 offered 1 to 9223372036854775807, and
    the model refused anything beyond 1,000,000)."""
    return _positive_int(text, MAX_ITER)


def _key(text: str) -> str:
    """A key as the command line gives it, read as the daemon reads keys: surrounding ASCII
    whitespace left out, its bytes as UTF-8, else as cp1252 (a terminal in another encoding),
    so that it names the stored key (``--key 'web-1 '`` found no key the daemon had stored as
    ``web-1``)."""
    key = key_text(os.fsencode(text).strip())
    if key is None:
        raise argparse.ArgumentTypeError(f"{text!r} is neither UTF-8 nor cp1252 text")
    return key


def parsed_blocks(stream, columns=None, n_fields=None, key=None, day_first="auto",
                  on_layout=None):
    """:func:`emstream.table.parse_stream`, a column it cannot find a usage error."""
    try:
        yield from parse_stream(stream, columns=columns, n_fields=n_fields, key=key,
                                day_first=day_first, on_layout=on_layout)
    except LayoutError as exc:
        raise CommandError(str(exc).replace("input.day_first", "--day-first")
                           .replace("input.columns", "--columns")) from None


def _add_day_first(command) -> None:
    command.add_argument("--day-first", choices=("auto", "true", "false"), default="auto",
                         help="times written 07/01/2014: day first (true) or month first "
                         "(false); auto: as a day above 12 shows (as emstreamd's "
                         "input.day_first)")


def _image_path(path: str, flag: str) -> str:
    """The file an image option writes: ``path``, or ``path.png`` if it has no extension (as
    matplotlib saves it; the message named the path given, not the file written)."""
    if not path:
        raise CommandError(f"{flag} names no file (an empty string)")
    if os.path.isdir(path):
        raise CommandError(f"{flag} {path}: is a directory; name an image file (FILE.png)")
    return path if os.path.splitext(path)[1] else path + ".png"


def _day_first(args):
    return {"true": True, "false": False}.get(getattr(args, "day_first", "auto"), "auto")


def _report_rejects(source: str, rejects: list, counts: dict) -> None:
    if not counts:
        return
    total = sum(counts.values())
    summary = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    print(printable(f"emstream: {source}: skipped {total} line(s): {summary}", one_line=True),
          file=sys.stderr)
    for reject in rejects[:SHOWN_REJECTS]:
        print(f"  line {reject.line}: {reject.reason}: {reject.text!r}", file=sys.stderr)


def _report_trailing_garbage(stream, source: str) -> None:
    """Say so if a compressed file's data ended at bytes that are no compressed data."""
    if getattr(stream, "trailing_garbage", False):
        kind = stream.compression
        print(f"emstream: {source}: bytes after its last {kind} "
              f"{'member' if kind == 'gzip' else 'stream'} are not {kind} data; read up to "
              f"them", file=sys.stderr)


def read_rows(name: str, columns=None, day_first="auto", key=None, key_column=0):
    """All rows of a data file (or stdin) and the tally of rejected lines; with ``key``, the
    rows of that series alone (its key in column ``key_column``, as ``input.key``)."""
    stream = _open_input(name)
    rows, rejects, counts, n_lines, layouts = [], [], {}, 0, []
    try:
        for parsed in parsed_blocks(stream, columns, day_first=day_first,
                                    key=None if key is None else key_column,
                                    on_layout=layouts.append):
            if key is not None and parsed.keys is not None:
                parsed = of_key(parsed, key)
            rows.append(parsed.rows)
            rejects.extend(parsed.rejects[:SHOWN_REJECTS])
            for reason, n in parsed.reject_counts().items():
                counts[reason] = counts.get(reason, 0) + n
            n_lines += parsed.n_lines
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    source = "stdin" if name == "-" else name
    _report_trailing_garbage(stream, source)
    _report_rejects(source, rejects, counts)
    widths = {r.shape[1] for r in rows if r.size}
    data = np.concatenate([r for r in rows if r.size]) if widths else np.empty((0, 0))
    if data.shape[0] == 0 and key is not None:
        raise CommandError(f"{source}: no numeric rows found for key {key!r} (its key in "
                           f"column {key_column!r})")
    if data.shape[0] == 0:
        raise CommandError(f"{source}: no numeric rows found")
    found = {"path": source, "lines": n_lines, "rows": int(data.shape[0]), "rejected": counts}
    if layouts and layouts[0] is not None:
        found["layout"] = layouts[0].to_dict()  # (the columns' names: score checks them)
    return data, found


def _rows_to_draw(args) -> np.ndarray:
    """inspect's DATA rows: with ``--key-column``, a store key's rows alone (every key's were
    drawn under its mixture); without it, every row (a file of one key's rows, or a model
    that is no store's key)."""
    if args.key is None or args.key_column is None:
        if args.key is not None:
            print(f"emstream: {args.data} drawn whole under key {args.key!r}'s mixture; "
                  "--key-column C draws that key's rows alone of a file of many keys",
                  file=sys.stderr)
        return read_rows(args.data, args.columns, _day_first(args))[0]
    return read_rows(args.data, args.columns, _day_first(args), key=args.key,
                     key_column=args.key_column)[0]


def _header_names(layout) -> list | None:
    """The value columns' names a table's header gave (None: no header, or no table)."""
    if layout is None or getattr(layout, "names", None) is None:
        return None
    return [str(name) for name in layout.column_names()]


# ---------------------------------------------------------------------------- fit
class _Progress(logging.Handler):
    """Prints EM progress to stderr once a fit has iterated for more than a second."""

    def __init__(self):
        super().__init__(logging.INFO)
        # From the first iteration's record: the one-off imports and seeding before it (up to
        # a second on a loaded machine) would make even a tiny fit print every iteration.
        self.start = None

    def emit(self, record):
        now = time.monotonic()
        if self.start is None:
            self.start = now
        if now - self.start > 1.0:
            print(f"emstream: {record.getMessage()}", file=sys.stderr, flush=True)


def cmd_fit(args) -> int:
    try:
        # (before the data are read: -k 0 failed after a file of a million rows was parsed,
        # with the file's name in front, as a bad file's exit 1)
        _fit_model(args)._validate_params()
    except ValueError as exc:
        raise UsageError(_OPTION_NAMES.get(str(exc).split(" ", 1)[0], "") + str(exc)) from None
    args.output = _fit_output(args.output, args.data)
    if args.dask_scheduler:
        return _fit_on_dask(args)
    X, source = read_rows(args.data, args.columns, _day_first(args))
    model = _fit_logged(args, X, source)
    return _save_fit(args, model, source)


def _is_stdin(path: Path) -> bool:
    """Whether standard input is the file ``path`` (``fit - -o d.txt < d.txt``)."""
    try:
        given, there = os.fstat(sys.stdin.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # (no stdin, or one without a descriptor)
        return False
    return (given.st_dev, given.st_ino) == (there.st_dev, there.st_ino)


def _fit_output(name: str, data: str | None = None) -> Path:
    """``fit -o``: where the checkpoint goes, checked before any fitting (a fit of an hour must
    not end in "no such directory").  A name ending in ``/`` is a directory, made if need be;
    a symbolic link is written through; a device, a pipe or the data file itself is refused
    (each was replaced by the checkpoint)."""
    path = target = Path(name)
    if not path.is_dir() and not name.endswith(("/", os.sep)):
        try:
            target = checkpoint.file_target(path)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if data and data != "-" and target.exists() and Path(data).exists() \
                and os.path.samefile(target, data):
            raise CommandError(f"{name} is the data file {data}: a checkpoint would replace it")
        if data == "-" and target.exists() and _is_stdin(target):
            raise CommandError(f"{name} is the data file read on standard input: a checkpoint "
                               "would replace it")
    if name.endswith(("/", os.sep)) and not path.is_dir():
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise CommandError(f"{name}: cannot make the directory "
                               f"({exc.strerror or exc})") from None
    folder = path if path.is_dir() else target.parent
    if not folder.is_dir():
        raise CommandError(f"{name}: no directory {str(folder)!r} to write the checkpoint in")
    from .store import STORE_NAME, is_store

    if (path.is_dir() and (path / STORE_NAME).exists()) or (target.exists() and is_store(target)):
        # (a checkpoint written over it lost every key's model; one beside it hid it from
        # emstream inspect --keys)
        raise CommandError(f"{name} is a keyed emstreamd's state store: write the fit "
                           "elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{name}: the directory {str(folder)!r} is not writable")
    return path


def _fit_model(args) -> GaussianMixture:
    """The model the command's options describe."""
    # (A model resumed by emstreamd warms up on warmup_size rows, one per component at least:
    # -k 1001 was fitted for half a minute, then refused at saving, "warmup_size must be at
    # least n_components", an option fit does not have.)
    return GaussianMixture(args.k, covariance_type=args.covariance_type, tol=args.tol,
                           reg_covar=args.reg_covar, max_iter=args.max_iter,
                           n_init=args.n_init, random_state=args.random_state, verbose=1,
                           verbose_interval=1, warmup_size=max(1000, args.k))


# The options that set each hyper-parameter, named in front of its error.
_OPTION_NAMES = {"n_components": "-k: ", "tol": "--tol: ", "reg_covar": "--reg-covar: ",
                 "max_iter": "--max-iter: ", "n_init": "--n-init: ",
                 "random_state": "--random-state: "}


def _fit_logged(args, X, source) -> GaussianMixture:
    """A model built from the command's options, fitted to ``X`` with progress on stderr."""
    model = _fit_model(args)
    logger = logging.getLogger("emstream")
    handler = _Progress()
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        model.fit(X)
    except ValueError as exc:
        raise CommandError(f"{source['path']}: {exc}") from None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    return model


def _save_fit(args, model, source) -> int:
    meta = {"command": "fit", "source": {k: v for k, v in source.items() if k != "layout"}}
    if "layout" in source:  # (where the daemon keeps its own: inspect names the features)
        meta["layout"] = source["layout"]
    try:
        written = checkpoint.save(model, args.output, meta=meta, keep=args.keep)
    except ValueError as exc:
        raise CommandError(f"{args.output}: {exc}") from None
    state = "converged" if model.converged_ else "did not converge"
    print(f"emstream: fitted {args.k} components to {source['rows']} rows in {model.n_iter_} "
          f"iterations ({state}); average log-likelihood {model.lower_bound_:.6g}; "
          f"wrote {written}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- fit on dask
def _dask_address(text: str) -> str:
    """``--dask-scheduler``: ``local:N`` (N >= 1) or a scheduler address."""
    if text.startswith("local:") and not (text[6:].isdigit() and int(text[6:]) >= 1):
        raise argparse.ArgumentTypeError(f"local:N wants N >= 1 worker processes; got {text!r}")
    if not text:
        raise argparse.ArgumentTypeError("give a scheduler address like tcp://host:8786")
    return text


def _is_parquet(pattern: str) -> bool:
    return Path(pattern).is_dir() or pattern.lower().endswith(PARQUET_SUFFIXES)


def _parse_block(data: bytes, n_fields, columns, line_end: bytes = b"\n"):
    """Parse one block of whole lines (a dask task) that end in ``line_end``: rows and what
    was rejected."""
    if line_end != b"\n":
        data = data.replace(line_end, b"\n")
    parsed = parse_lines(blank_byte_order_marks(data), n_fields=n_fields, columns=columns)
    return parsed.rows, (parsed.rows.shape[0], parsed.n_lines, parsed.reject_counts(),
                         parsed.rejects[:SHOWN_REJECTS])


def _sample_fields(sample: bytes) -> tuple:
    """The number of fields of the first numeric line among a file's first bytes (None if
    there is none) and its line end (a lone CR where the sample has no LF)."""
    line_end = b"\r" if b"\n" not in sample and b"\r" in sample else b"\n"
    head = (sample[:sample.rfind(line_end) + 1] or sample).replace(line_end, b"\n")
    return parse_lines(head).n_fields, line_end


def _text_rows_dask(pattern: str, columns):
    """Text files matching ``pattern`` as a dask array, parsed by the same parser on the workers.

    Reads every block once to count rows and rejects (reported per file, with line numbers),
    then builds the array of rows; the fit persists it when it fits in the cluster's memory.
    """
    import dask
    import dask.array as da
    from dask.bytes import read_bytes

    import fsspec

    line_end, sample, sampled = b"\n", b"", None
    try:
        # (a file's start read here, not by read_bytes: its sample reads on to the next
        # delimiter, the whole file for one without an LF, copying it as it grows)
        _, blocks, paths = read_bytes(pattern, delimiter=line_end, blocksize=DASK_BLOCK_BYTES,
                                      sample=False, include_path=True)
        for path in paths:
            # The first file with a numeric line at its start sets the columns and the line
            # end: a glob often matches an empty file, or one of a header alone, first.
            with fsspec.open(path, "rb") as handle:
                sample = handle.read(DASK_SAMPLE_BYTES)
            sampled = path
            if _sample_fields(sample)[0] is not None:
                break
        line_end = _sample_fields(sample)[1]
        if line_end != b"\n":  # lines ending in a lone CR
            _, blocks, paths = read_bytes(pattern, delimiter=line_end,
                                          blocksize=DASK_BLOCK_BYTES, sample=False,
                                          include_path=True)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{pattern}: cannot read ({exc})") from None
    if not paths:
        raise CommandError(f"{pattern}: no files match")
    for path in paths:
        # (read as text, a compressed file's bytes made a few junk rows and lost the rest,
        # and the fit reported success)
        with fsspec.open(path, "rb") as handle:
            head = handle.read(6)
        kind = next((kind for magic, kind in MAGIC if head.startswith(magic)), None)
        if kind is not None:
            raise CommandError(f"{path} is {kind}-compressed: --dask-scheduler reads plain "
                               "text files (decompress it first, or fit without "
                               "--dask-scheduler, which decompresses)")
    if columns is not None and any(isinstance(c, str) for c in columns):
        # (the cluster's parser reads numbers, with no header to find names in)
        raise CommandError("--dask-scheduler reads text files of numbers: --columns takes "
                           "0-based indices there (names: Parquet)")
    n_fields = _sample_fields(sample)[0]
    if n_fields is None:
        where = (f"{sampled}: no numeric line in its first {len(sample)} bytes"
                 if len(paths) == 1 else f"{pattern}: no numeric line in the first "
                 f"{DASK_SAMPLE_BYTES} bytes of any of its {len(paths)} files")
        raise CommandError(where)
    parse = dask.delayed(_parse_block, nout=2)
    parsed = [[parse(block, n_fields, columns, line_end) for block in file_blocks]
              for file_blocks in blocks]
    try:
        reports = dask.compute([[p[1] for p in file_parts] for file_parts in parsed])[0]
    except ValueError as exc:
        raise CommandError(f"{pattern}: {exc}") from None
    width = len(columns) if columns is not None else n_fields
    parts, total_lines, counts = [], 0, {}
    for path, file_parts, file_reports in zip(paths, parsed, reports):
        offset, rejects, file_counts = 0, [], {}
        for (rows, _), report in zip(file_parts, file_reports):
            n_rows, n_lines, block_counts, block_rejects = report
            rejects.extend(r._replace(line=r.line + offset) for r in block_rejects)
            for reason, n in block_counts.items():
                file_counts[reason] = file_counts.get(reason, 0) + n
            if n_rows:
                parts.append(da.from_delayed(rows, shape=(n_rows, width), dtype=float))
            offset += n_lines
        _report_rejects(path, rejects, file_counts)
        total_lines += offset
        for reason, n in file_counts.items():
            counts[reason] = counts.get(reason, 0) + n
    if not parts:
        raise CommandError(f"{pattern}: no numeric rows found")
    X = da.concatenate(parts)
    return X, {"path": pattern, "files": len(paths), "lines": total_lines,
               "rows": int(X.shape[0]), "rejected": counts}


def _parquet_rows_dask(pattern: str, columns):
    """Numeric columns of Parquet files (a glob or a directory) as a dask data frame."""
    import dask.dataframe as dd

    try:
        frame = dd.read_parquet(pattern)
    except ImportError as exc:
        raise CommandError(f"reading Parquet needs pyarrow ({exc}); install it with: "
                           "pip install 'emstream[dask]'") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"{pattern}: cannot read as Parquet ({exc})") from None
    if columns is not None:
        names = [str(c) for c in frame.columns]
        unknown = [c for c in columns if isinstance(c, str) and c not in names]
        if unknown:
            raise CommandError(f"{pattern}: --columns {', '.join(unknown)}: no such column "
                               f"(columns: {', '.join(names)})")
        columns = [names.index(c) if isinstance(c, str) else c for c in columns]
        if any(c >= len(frame.columns) for c in columns):
            names = ", ".join(map(str, frame.columns))
            raise CommandError(f"{pattern}: --columns {columns} out of range for "
                               f"{len(frame.columns)} columns ({names})")
        frame = frame[[frame.columns[c] for c in columns]]
    return frame, {"path": pattern, "rows": int(len(frame)), "rejected": {}}


def _fit_on_dask(args) -> int:
    """``fit --dask-scheduler``: read through dask, run EM on the cluster, save on the client."""
    if args.data == "-":
        raise CommandError("--dask-scheduler reads files (a glob), not stdin")
    read = _parquet_rows_dask if _is_parquet(args.data) else _text_rows_dask
    try:
        from . import distributed
        dask = distributed.require("dask")
        with distributed.connect(args.dask_scheduler) as client, \
                dask.config.set(scheduler=client):
            X, source = read(args.data, args.columns)
            source["scheduler"] = args.dask_scheduler
            model = _fit_logged(args, X, source)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    except ConnectionError as exc:
        raise CommandError(str(exc)) from None
    except CommandError:
        raise
    except Exception as exc:  # (the cluster's own failures: a scheduler lost mid-fit...)
        raise CommandError(f"the fit on {args.dask_scheduler} failed: {type(exc).__name__}: "
                           f"{exc}") from None
    return _save_fit(args, model, source)


# ---------------------------------------------------------------------------- score
def _learned_features(meta: dict):
    """The temporal features a daemon's model learned (lags, season...), or None: the
    model then learned the input's values as they are."""
    series = meta.get("series") if isinstance(meta, dict) else None
    features = series.get("features") if isinstance(series, dict) else None
    return features if isinstance(features, dict) else None


def cmd_score(args) -> int:
    loaded = load_any(args.checkpoint, args.key)
    model = loaded.model
    if not model._is_fitted():
        raise CommandError(f"{args.checkpoint}: the model in it is not fitted yet")
    if _learned_features(loaded.meta) is not None:
        # Its rows are values with their context (previous value, a season back), which
        # only the stream they came from has: the daemon's own per-point output scores them.
        raise CommandError(f"{args.checkpoint}: the model learned {model.n_features_in_} "
                           "temporal features of the input's values (emstreamd's features: "
                           "lags, season), not the values alone; emstreamd's per-point "
                           "output holds each point's score (a model that learns the values "
                           "alone: features.enabled: false)")
    stream = _open_input(args.data)
    out = sys.stdout
    if out is None:  # (started with its standard output closed: >&-)
        raise CommandError("standard output is closed: the scores have nowhere to go "
                           "(redirect it to a file or /dev/null)")
    # (written once the input's columns passed their check: a refused DATA writes nothing)
    if args.header and args.format == "jsonl":  # (accepted and silently unused)
        raise UsageError("--header writes a csv header line: JSON lines name their fields in "
                         "every line (drop --header, or use --format csv)")
    header = "line,label,probability,surprise\n" if args.format == "csv" and \
        args.header is not False else ""
    rejects, counts = [], {}
    key_column = None if args.key is None else args.key_column
    fitted = _fitted_names(loaded.meta) if args.columns is None else None

    def same_columns(layout) -> None:
        # Columns are matched by position: a header in another order than the fit's was
        # scored silently, every row thousands of times too surprising.
        names = _header_names(layout)
        if fitted is not None and names is not None and names != fitted:
            missing = [name for name in fitted if name not in names]
            # (--columns naming a column the file lacks was suggested for it too)
            hint = (f"it has no {', '.join(missing)}: give --columns with as many of its own "
                    "columns, in the fit's order" if missing else
                    f"give --columns {','.join(fitted)} (or other columns, in the fit's order)")
            raise CommandError(f"{args.data}: its columns are {', '.join(names)}; the model "
                               f"was fitted on {', '.join(fitted)}: {hint}")

    try:
        for parsed in parsed_blocks(stream, args.columns, key=key_column,
                                    day_first=_day_first(args), on_layout=same_columns):
            for reason, n in parsed.reject_counts().items():
                counts[reason] = counts.get(reason, 0) + n
            rejects.extend(parsed.rejects[:SHOWN_REJECTS])
            if key_column is not None and parsed.keys is not None:
                parsed = of_key(parsed, args.key)  # the key's own rows only
            if not parsed.rows.size:
                continue
            if parsed.rows.shape[1] != model.n_features_in_:
                raise CommandError(f"{args.data}: rows have {parsed.rows.shape[1]} values, the "
                                   f"model expects {model.n_features_in_} (see --columns)")
            if header:  # (after the rows' width passed: a refused DATA wrote a header alone)
                out.write(header)
                header = ""
            log_prob, resp = model.posterior(parsed.rows)
            labels = resp.argmax(axis=1)
            best = resp[np.arange(len(labels)), labels]
            out.write(format_rows(args.format, parsed.lines, labels, best, -log_prob).decode())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    out.write(header)  # (an input of no lines: the header alone, as before)
    _report_trailing_garbage(stream, args.data)
    _report_rejects("stdin" if args.data == "-" else args.data, rejects, counts)
    return 0


def _fitted_names(meta: dict) -> list | None:
    """The names of the columns a model was fitted on, if its checkpoint says (a header)."""
    layout = meta.get("layout") if isinstance(meta, dict) else None
    try:
        return _header_names(layout_from_dict(layout)) if isinstance(layout, dict) else None
    except (KeyError, TypeError, ValueError):  # (a hand-edited checkpoint)
        return None


# ---------------------------------------------------------------------------- inspect
def summary(loaded, covariances: bool = True) -> dict:
    """The facts ``inspect`` shows, as JSON-compatible data (``covariances=False``: without
    each component's D x D covariance, which the text does not show: a wide diag model's
    would not fit in memory)."""
    model = loaded.model
    out = {"file": str(loaded.path), "written_at": loaded.written_at,
           "skipped": [{"file": str(p), "reason": r} for p, r in loaded.skipped],
           "n_components": model.n_components, "covariance_type": model.covariance_type,
           "fitted": model._is_fitted(), "meta": loaded.meta}
    learner = model.__dict__.get("_online")
    if not model._is_fitted():
        buffered = learner.buffered if learner is not None else 0
        out.update(warming_up=True, buffered=buffered, warmup_size=model.warmup_size)
        return out
    k, d = model.means_.shape
    names = feature_names(loaded.meta, d)
    if names is not None:
        out["feature_names"] = names
    variances = _variances(model.covariances_, model.covariance_type, k, d)
    recent = model.recent_counts_ / max(model.recent_counts_.sum(), np.finfo(float).tiny)
    out.update(
        warming_up=False, n_features=d, n_seen=int(model.n_seen_),
        n_updates=int(model.n_updates_), schedule_position=float(learner.t),
        warmup_buffered=learner.buffered,
        upkeep={"checks": learner.upkeep.checks, "replaced": learner.upkeep.replaced,
                "events": learner.upkeep.events},
        # (none in a checkpoint whose model.batch is null: learned online from the start)
        last_batch_fit=None if not hasattr(model, "n_iter_") else {
            "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
            "average_log_likelihood": model.lower_bound_
            if np.isfinite(model.lower_bound_) else None},
        components=[{"index": i, "weight": float(model.weights_[i]),
                     "mean": model.means_[i].tolist(),
                     "std": np.sqrt(variances[i]).tolist(),
                     **({"covariance": _covariance(model, i).tolist()} if covariances else {}),
                     "recent_share": float(recent[i])}
                    for i in range(k)])
    return out


def _covariance(model, i: int) -> np.ndarray:
    """Component ``i``'s covariance as a (D, D) matrix (one at a time: K of a wide diag model
    at once took K times the memory)."""
    own = model.covariances_ if model.covariance_type == "tied" else model.covariances_[i:i + 1]
    return full_covariances(own, model.covariance_type, 1, model.means_.shape[1])[0]


def _variances(covariances, covariance_type: str, k: int, d: int) -> np.ndarray:
    """Each component's variances (K, D), whatever the covariance type, without building the
    D x D matrices of a diag or spherical model."""
    covariances = np.asarray(covariances)
    if covariance_type == "full":
        return np.diagonal(covariances, axis1=1, axis2=2)
    if covariance_type == "tied":
        return np.broadcast_to(np.diag(covariances), (k, d))
    if covariance_type == "diag":
        return covariances
    return np.broadcast_to(covariances[:, None], (k, d))


def feature_names(meta: dict, d: int) -> list | None:
    """What each of a daemon's model's ``d`` features is (``value``, ``value[t-1]``...), from
    its checkpoint's layout and temporal features; None when the checkpoint does not say."""
    layout, features = meta.get("layout"), _learned_features(meta)
    try:
        names = layout_from_dict(layout).column_names() if isinstance(layout, dict) else None
        if features is None:
            return names if names is not None and len(names) == d else None
        temporal = TemporalFeatures.from_state(features)
        if names is None:  # plain numbers: x0, x1... as many as make d features
            values = [n for n in range(1, d + 1) if temporal.n_features_out(n) == d]
            names = [f"x{j}" for j in range(values[0])] if values else None
        out = temporal.feature_names(names) if names is not None else None
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):  # (a hand-edited
        # checkpoint; OverflowError: an integer beyond any float)
        return None
    return out if out is not None and len(out) == d else None


def _number(value) -> str:
    return "-inf" if value is None else f"{value:.6g}"


def _format_summary(info: dict) -> str:
    lines = [f"checkpoint  {info['file']}", f"written     {info['written_at']}"]
    for skipped in info["skipped"]:
        lines.append(f"skipped     {skipped['file']}: {skipped['reason']}")
    lines.append(f"model       {info['n_components']} components, "
                 f"{info['covariance_type']} covariance")
    if info["warming_up"]:
        lines.append(f"state       warming up: {info['buffered']} of {info['warmup_size']} "
                     "points buffered")
    elif not info["fitted"]:
        lines.append("state       not fitted")
    else:
        fit = info["last_batch_fit"]
        names = info.get("feature_names")
        lines += [f"features    {info['n_features']}"
                  + (f": {', '.join(names)}" if names else ""),
                  f"seen        {info['n_seen']} points online since the last batch fit, "
                  f"{info['n_updates']} updates (step schedule at t={info['schedule_position']:g})",
                  "batch fit   none" if fit is None else
                  f"batch fit   {fit['n_iter']} iterations, "
                  f"{'converged' if fit['converged'] else 'not converged'}, average "
                  f"log-likelihood {_number(fit['average_log_likelihood'])}"]
    if info["meta"]:
        lines += _format_meta(info["meta"])
    if info.get("components"):
        lines.append("")
        lines.append(f"{'component':>9}  {'weight':>7}  {'recent':>7}  {'mean':<24}  std dev")
        for c in info["components"]:
            mean = " ".join(f"{v:.6g}" for v in c["mean"])
            std = " ".join(f"{v:.4g}" for v in c["std"])
            lines.append(f"{c['index']:>9}  {c['weight']:7.4f}  {c['recent_share']:7.4f}  "
                         f"{mean:<24}  {std}")
    return "\n".join(lines)


def _format_meta(meta: dict) -> list[str]:
    """The stored metadata: a daemon's counters, input position, layout and history, each on
    its own line; anything else as one line of JSON."""
    if isinstance(meta, dict) and isinstance(meta.get("counters"), dict):
        try:
            return _format_daemon_meta(meta)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # not what the daemon writes: shown as it is
    return ["input       " + json.dumps(meta, sort_keys=True)]


def _format_daemon_meta(meta: dict) -> list[str]:
    c = meta["counters"]
    rejected = c.get("rejected", {})
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(rejected.items()))
    # (A keyed daemon's key counts its rows only: lines and rejects belong to the stream.)
    read = (f" from {c['lines']} lines; rejected {sum(rejected.values())}"
            + (f" ({reasons})" if reasons else "")) if "lines" in c else ""
    lines = [f"counters    {c['rows']} points in {c['batches']} batches{read}"
             + f"; anomalies {c.get('anomalies', 0)}; kept out of the model by the outlier "
             + f"gate {c.get('gated', 0)}; drift alarms {c.get('alarms', 0)}; "
             + f"refits {c.get('refits', 0)}"]
    if meta.get("key") is not None:
        waiting = len((meta.get("pending") or {}).get("lines") or ())
        lines.append(f"key         {meta['key']!r} of a state store; {waiting} rows waiting "
                     "for its next mini-batch")
    source = meta.get("input") or {}
    if source:
        where = source.get("path") or source.get("kind", "?")
        text = f"input       {source.get('kind', '?')} {where}"
        if source.get("kind") != "stdin":
            text += f": byte {source['offset']}"
        text += f", next line {source['next_line']}"
        if source.get("inode") is not None:
            text += f" (device {source['device']}, inode {source['inode']})"
        lines.append(text)
    layout = meta.get("layout")
    if layout == "plain":
        n = meta.get("n_fields")
        lines.append(f"layout      plain numbers, {n} number{'' if n == 1 else 's'} per line")
    elif isinstance(layout, dict):
        lines.append(f"layout      {layout_from_dict(layout).describe()}")
    history = meta.get("history") or []
    kinds = {}
    for event in history:
        kind = event.get("event", "?")
        if kind == "refit":
            kind = "refit (model replaced)" if event.get("replaced", True) else "refit (kept)"
        kinds[kind] = kinds.get(kind, 0) + 1
    text = "history     " + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                             or "no events")
    if history:
        last = history[-1]
        reason = f" ({last['reason']})" if last.get("reason") else ""
        text += f"; last: {last.get('event')}{reason} at point {last.get('rows')}"
    lines.append(text)
    return lines


# What reading a damaged or foreign SQLite file as a state store raises (a missing table, a
# column of another type, JSON that is not).
_DAMAGED_STORE = (sqlite3.Error, ValueError, TypeError, OverflowError)


def _open_store(path: str):
    """The state store at ``path`` (or in it: a keyed daemon's checkpoint directory, which
    holds no single-series checkpoint), or None if it is not one."""
    from .store import STORE_NAME, KeyStore, StoreError, is_store

    if Path(path).is_dir() and not any(Path(path).glob("checkpoint-*.json")):
        path = str(Path(path) / STORE_NAME)
    if not is_store(path):
        return None
    try:
        return KeyStore(path)
    except StoreError as exc:
        raise CheckpointError(str(exc)) from None


def _names_store(path: str) -> bool:
    store = _open_store(path)
    if store is not None:
        store.close()
    return store is not None


def load_any(path: str, key: str | None = None):
    """A checkpoint: a file or directory, or (with ``key``) one key of a state store."""
    store = _open_store(path)
    if store is None:
        if key is not None:
            raise CommandError(f"{path}: --key needs a state store (a keyed emstreamd's "
                               "keys.sqlite)")
        return checkpoint.load(path)
    path = store.path  # (the file, when given its directory)
    try:
        if key is None:
            raise CommandError(f"{path} is a state store of {len(store)} keys: name one with "
                               "--key (list them with emstream inspect --keys)")
        document = store.get(key)
    except _DAMAGED_STORE as exc:
        raise CommandError(f"{path}: not a readable state store ({exc})") from None
    finally:
        store.close()
    if document is None:
        raise CommandError(f"{path}: no key {key!r}")
    loaded = checkpoint.loads(document, source=f"{path} key {key!r}")
    held = loaded.meta.get("key") if isinstance(loaded.meta, dict) else None
    if held is not None and held != key:
        # (a hand-edited store: the daemon would learn one key's rows into another's model)
        raise CommandError(f"{path}: not a readable state store (key {key!r} holds the "
                           f"document of key {held!r})")
    return loaded


def store_listing(path: str, order: str = "key", top: int | None = None) -> dict:
    """A state store's keys (points, last update, anomalies, alarms, rows waiting; sorted by
    ``order``, the first ``top`` only if given) and the daemon's position and counters, as
    JSON-compatible data."""
    store = _open_store(path)
    if store is None:
        raise CommandError(f"{path}: --keys needs a state store (a keyed emstreamd's "
                           "keys.sqlite)")
    try:
        keys, meta = store.listing(order, top), store.meta("daemon") or {}
        total = len(store)
    except _DAMAGED_STORE as exc:
        raise CommandError(f"{store.path}: not a readable state store ({exc})") from None
    finally:
        store.close()
    parts = {"daemon meta": meta}
    if isinstance(meta, dict):  # (what the listing shows of it: an edited store's may be anything)
        parts.update({"daemon meta's input": meta.get("input"),
                      "daemon meta's counters": meta.get("counters")})
    for part, value in parts.items():
        if value is not None and not isinstance(value, dict):
            raise CommandError(f"{store.path}: not a readable state store (its {part} is not "
                               "an object)")
    for row in keys:
        if row["updated"] is not None:
            try:
                row["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["updated"]))
            except (TypeError, ValueError, OverflowError, OSError):  # (an edited store)
                row["updated"] = str(row["updated"])
    return {"store": store.path, "n_keys": total, "sorted_by": order, "keys": keys,
            "counters": meta.get("counters"), "input": meta.get("input")}


def _format_listing(info: dict) -> str:
    shown = "" if len(info["keys"]) == info["n_keys"] else \
        f", the first {len(info['keys'])} by {info['sorted_by']}"
    # Each field on its own line: a newline in a key or a path (a hand-edited store) forged
    # rows of the listing.
    field = lambda value: printable(str(value), one_line=True)  # noqa: E731
    lines = [f"state store {field(info['store'])}: {info['n_keys']} keys{shown}"]
    if info["input"]:
        lines.append(f"input: {field(info['input'].get('path', info['input'].get('kind')))} at "
                     f"byte {field(info['input'].get('offset'))} "
                     f"(line {field(info['input'].get('next_line'))})")
    keys = [field(row["key"]) for row in info["keys"]]
    width = max([3] + [len(key) for key in keys])
    lines.append(f"{'key':<{width}}  {'points':>10}  {'anomalies':>9}  {'alarms':>6}  "
                 f"{'waiting':>7}  last update")
    lines += [f"{key:<{width}}  {row['points']:>10}  {row['anomalies']:>9}  "
              f"{row['alarms']:>6}  {row['pending']:>7}  {row['updated'] or '-'}"
              for key, row in zip(keys, info["keys"])]
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    if args.keys:
        info = store_listing(args.checkpoint, args.sort, args.top)
        print(json.dumps(info, indent=1) if args.json else printable(_format_listing(info)))
        return 0
    if args.plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            # (said after the whole summary was printed, as though it had been the answer)
            raise CommandError("--plot needs matplotlib: pip install 'emstream[plot]'")
    loaded = load_any(args.checkpoint, args.key)
    info = summary(loaded, covariances=args.json)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(printable(_format_summary(info)))
    if args.plot is not None:
        from .plot import plot_mixture
        target = _image_path(args.plot, "--plot")
        if not loaded.model._is_fitted():
            raise CommandError(f"{args.checkpoint}: nothing to draw yet: the model is still "
                               "warming up")
        data = _rows_to_draw(args) if args.data else None
        if data is not None and data.shape[1] != loaded.model.n_features_in_:
            raise CommandError(f"{args.data}: rows of {data.shape[1]} values, the model has "
                               f"{loaded.model.n_features_in_} features (see --columns)")
        try:
            plot_mixture(loaded.model, target, data=data, features=args.features)
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install 'emstream[plot]'") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(printable(f"emstream: wrote {target}", one_line=True), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- diff
def diff(loaded_a, loaded_b) -> dict:
    """Component matching and distance between two checkpoints, as JSON-compatible data."""
    a, b = loaded_a.model, loaded_b.model
    for side, loaded in (("A", loaded_a), ("B", loaded_b)):
        if not loaded.model._is_fitted():
            raise CommandError(f"{loaded.path}: ({side}) holds no fitted model yet")
    if a.n_features_in_ != b.n_features_in_:
        raise CommandError(f"the models have {a.n_features_in_} and {b.n_features_in_} features;"
                           " they cannot be compared")
    d = a.n_features_in_
    cov_a = full_covariances(a.covariances_, a.covariance_type, len(a.weights_), d)
    cov_b = full_covariances(b.covariances_, b.covariance_type, len(b.weights_), d)
    match = match_components(a.weights_, a.means_, cov_a, b.weights_, b.means_, cov_b)
    pairs = [{"a": i, "b": j, "weight_a": float(a.weights_[i]), "weight_b": float(b.weights_[j]),
              "weight_change": float(b.weights_[j] - a.weights_[i]),
              "mean_change": (b.means_[j] - a.means_[i]).tolist(),
              "bhattacharyya": _finite_or_none(dist)}
             for (i, j), dist in zip(match.pairs, match.distances)]
    return {"a": str(loaded_a.path), "b": str(loaded_b.path), "pairs": pairs,
            "relabelled": match.is_permutation, "unmatched_a": match.unmatched_a,
            "unmatched_b": match.unmatched_b, "divergence": _finite_or_none(match.divergence)}


def _finite_or_none(value) -> float | None:
    """A distance as JSON takes it: null where it is beyond any float (components that do
    not overlap at all within double precision; ``Infinity`` is no JSON)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _distance_text(value: float | None, spec: str) -> str:
    return "inf" if value is None else format(value, spec)


def cmd_diff(args) -> int:
    if args.b is None and args.key_b is None:
        raise CommandError("diff needs B, or --key and --key-b to compare two keys of A")
    b = args.a if args.b is None else args.b
    key_a, key_b = args.key, args.key if args.key_b is None else args.key_b
    if args.key is not None and args.key_b is None and args.b is not None:
        # --key alone names the key of whichever side is a store (one series against one key).
        a_store, b_store = _names_store(args.a), _names_store(b)
        if a_store != b_store:
            key_a, key_b = (args.key, None) if a_store else (None, args.key)
    loaded_a = load_any(args.a, key_a)
    loaded_b = load_any(b, key_b)
    result = diff(loaded_a, loaded_b)
    if args.plot is not None:
        target = _image_path(args.plot, "--plot")
        try:
            from .plot import plot_diff

            plot_diff(loaded_a.model, loaded_b.model, target, labels=(
                f"A {result['a']}", f"B {result['b']}"), features=args.features)
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install 'emstream[plot]'") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(printable(f"emstream: wrote {target}", one_line=True), file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1, allow_nan=False))
        return 0
    print(printable(f"A = {result['a']}\nB = {result['b']}"))
    print(f"{'A':>3} -> {'B':<3} {'weight A':>9} {'weight B':>9} {'change':>9}  "
          f"{'mean change':<24} distance")
    for p in result["pairs"]:
        change = " ".join(f"{v:+.4g}" for v in p["mean_change"])
        print(f"{p['a']:>3} -> {p['b']:<3} {p['weight_a']:9.4f} {p['weight_b']:9.4f} "
              f"{p['weight_change']:+9.4f}  {change:<24} "
              f"{_distance_text(p['bhattacharyya'], '.3g')}")
    for side in ("a", "b"):
        for i in result[f"unmatched_{side}"]:
            print(f"component {i} of {side.upper()} has no counterpart")
    if result["relabelled"]:
        mapping = ", ".join(f"{p['a']}->{p['b']}" for p in result["pairs"])
        print(f"components are relabelled: {mapping}")
    print(f"divergence (Cauchy-Schwarz, 0 = same density): "
          f"{_distance_text(result['divergence'], '.6g')}")
    return 0


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emstream", description=__doc__.splitlines()[0],
                                     epilog="Exit codes: 0 success, 1 a bad or unreadable "
                                     "file (one line on stderr), 2 usage.")
    parser.add_argument("--version", action="version", version=f"emstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser("fit", help="batch-fit a data file and write a checkpoint",
                         description="Fit a Gaussian mixture by batch EM to DATA (one number "
                         "per line, or CSV/whitespace columns) and write a checkpoint.")
    fit.add_argument("data", metavar="DATA", help="data file, or - for stdin")
    fit.add_argument("-k", type=int, required=True, help="number of components")
    fit.add_argument("-o", "--output", required=True, metavar="CKPT",
                     help="checkpoint file, or a directory for numbered checkpoints")
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full",
                     help="shape of each component's covariance (default: %(default)s)")
    fit.add_argument("--columns", type=_parse_columns, metavar="C,...",
                     help="columns to use, 0-based indices or header names; for JSON lines, "
                     "the fields (default: every column)")
    fit.add_argument("--reg-covar", type=float, default=1e-6,
                     help="added to every variance, in the data's units (default: %(default)s)")
    fit.add_argument("--tol", type=float, default=1e-3,
                     help="stop when the average log-likelihood gains less than this "
                     "(default: %(default)s)")
    # (at least 1: a saved model resumes learning, which max_iter=0 forbids; 0 was refused
    # only when the fit was saved, after it ran)
    fit.add_argument("--max-iter", type=_iterations, default=100,
                     help="at most this many EM iterations (default: %(default)s)")
    fit.add_argument("--n-init", type=int, default=1,
                     help="fits from this many initialisations; the best is kept "
                     "(default: %(default)s)")
    fit.add_argument("--random-state", type=int, default=0,
                     help="seed of the initialisation (default: %(default)s)")
    fit.add_argument("--keep", type=_positive_int, default=3,
                     help="checkpoints kept in a directory (default: %(default)s)")
    fit.add_argument("--dask-scheduler", type=_dask_address, metavar="ADDRESS",
                     help="fit on a dask cluster: a scheduler address (tcp://host:8786) or "
                     "local:N for N local worker processes; DATA is then a glob of text/CSV "
                     "files or of Parquet files (*.parquet, or a directory)")
    _add_day_first(fit)
    fit.set_defaults(run=cmd_fit)

    score = sub.add_parser("score", help="label and score rows with a checkpoint's model",
                           description="For each row of DATA: its line number, most probable "
                           "component, that component's probability and the surprise "
                           "-log p(x).")
    score.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory, or a "
                       "keyed emstreamd's state store (with --key)")
    score.add_argument("data", metavar="DATA", nargs="?", default="-",
                       help="data file (default: stdin)")
    score.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                       help="output lines (default: %(default)s)")
    score.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help="csv: a first line naming the columns (default: on)")
    score.add_argument("--columns", type=_parse_columns, metavar="C,...",
                       help="columns to use, 0-based indices or header names; for JSON lines, "
                       "the fields (default: every column)")
    score.add_argument("--key", type=_key, metavar="K",
                       help="a keyed stream's series: score its rows of "
                       "DATA with its model from a state store")
    score.add_argument("--key-column", metavar="C", type=_column, default=0,
                       help="with --key, DATA's key column, as input.key: a 0-based index or a "
                       "header name (default: 0)")
    _add_day_first(score)
    score.set_defaults(run=cmd_score)

    inspect = sub.add_parser("inspect", help="show what a checkpoint holds",
                             description="Per component: weight, share of recent points, mean "
                             "and standard deviation; the time written; for a daemon's "
                             "checkpoint its counters, input position, input layout and "
                             "history.")
    inspect.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or directory, or "
                         "a keyed emstreamd's state store (keys.sqlite)")
    one_or_all = inspect.add_mutually_exclusive_group()
    one_or_all.add_argument("--key", type=_key, metavar="K",
                            help="the key of a state store to show (as a single series' "
                            "checkpoint)")
    one_or_all.add_argument("--keys", action="store_true", help="list a state store's keys: "
                            "points, anomalies, drift alarms, rows waiting, last update")
    inspect.add_argument("--sort", default="key", choices=("key", "points", "anomalies",
                                                           "alarms", "updated", "waiting"),
                         help="--keys: by key name, or the most (the latest) first")
    inspect.add_argument("--top", type=_positive_int, metavar="N",
                         help="--keys: only the first N keys of that order")
    _add_view_options(inspect, "draw the density (1 feature), covariance ellipses (2), or a "
                      "grid of every pair of features (3 or more)")
    inspect.add_argument("--data", metavar="DATA", help="data to draw under --plot (with "
                         "--key and --key-column, that key's rows of it)")
    inspect.add_argument("--key-column", metavar="C", type=_column, default=None,
                         help="with --key and --data, DATA's key column, as input.key: a "
                         "0-based index or a header name; that key's rows alone are drawn "
                         "(default: every row of DATA)")
    inspect.add_argument("--columns", type=_parse_columns, metavar="C,...",
                         help="columns of --data to use, 0-based indices or header names; "
                         "for JSON lines, the fields (default: every column)")
    inspect.set_defaults(run=cmd_inspect)

    compare = sub.add_parser("diff", help="match components of two checkpoints and compare",
                             description="Match components (Hungarian assignment on the "
                             "Bhattacharyya distance), show weight and mean changes, and the "
                             "Cauchy-Schwarz divergence between the two mixtures.")
    compare.add_argument("a", metavar="A", help="the first checkpoint (file or directory, or "
                         "a state store)")
    compare.add_argument("b", metavar="B", nargs="?", help="the second checkpoint (default: A, "
                         "to compare two keys of one store)")
    compare.add_argument("--key", type=_key, metavar="K",
                         help="the key of A (and of B) to compare, when they are state "
                         "stores (of the one that is, if only one is)")
    compare.add_argument("--key-b", type=_key, metavar="K", help="the key of B, if not --key")
    _add_view_options(compare, "draw both mixtures overlaid (A solid, B dashed): densities, "
                      "ellipses, or a grid of pairs of features")
    compare.set_defaults(run=cmd_diff)

    timeline = sub.add_parser("timeline", help="draw a series with its scores and alerts",
                              description="Draw DATA (a time-series CSV, JSON lines or plain "
                              "numbers) over time with emstreamd's alerts marked, and the score "
                              "from its per-point output SCORES (csv or jsonl) below it.")
    timeline.add_argument("data", metavar="DATA", help="the series emstreamd read")
    timeline.add_argument("scores", metavar="SCORES", help="emstreamd's per-point output")
    timeline.add_argument("-o", "--output", required=True, metavar="FILE.png",
                          help="image file (png, svg, pdf)")
    timeline.add_argument("--threshold", type=_score_level, default=DEFAULT_THRESHOLD,
                          help="the anomaly threshold to draw (default: %(default)s)")
    timeline.add_argument("--title", help="a title over the picture")
    timeline.add_argument("--key", type=_key, metavar="K",
                          help="a keyed stream's series to draw (the key's rows of DATA "
                          "and lines of SCORES)")
    timeline.add_argument("--key-column", metavar="C", type=_column, default=0,
                          help="DATA's key column, as input.key: a 0-based index or a header "
                          "name (default: 0)")
    timeline.add_argument("--column", metavar="C", type=_column, help="the value to draw: a "
                          "0-based index or a header name; for JSON lines, a field (needed "
                          "there; default: the first value column)")
    _add_day_first(timeline)
    timeline.set_defaults(run=cmd_timeline)
    return parser


def cmd_timeline(args) -> int:
    target = _image_path(args.output, "--output")
    try:
        from .timeline import plot_timeline

        notes = plot_timeline(args.data, args.scores, target, threshold=args.threshold,
                              title=args.title, key=args.key, key_column=args.key_column,
                              day_first=_day_first(args), column=args.column)
    except ImportError:
        raise CommandError("timeline needs matplotlib: pip install 'emstream[plot]'") from None
    for note in notes:
        print(printable(f"emstream: note: {note}", one_line=True), file=sys.stderr)
    print(printable(f"emstream: wrote {target}", one_line=True), file=sys.stderr)
    return 0


def _late_positional(parser, args, extra: list):
    """``emstream score CKPT --format jsonl DATA``: argparse gives an optional positional
    nothing once an option follows the one before it, and refused DATA as "unrecognized";
    taken here if it is the command's one optional positional, still unset."""
    optional = {cmd_score: ("data", "-"), cmd_diff: ("b", None)}.get(args.run)
    given = extra[0] if len(extra) == 1 else None
    if optional is None or given is None or (given.startswith("-") and given != "-") \
            or getattr(args, optional[0]) != optional[1]:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setattr(args, optional[0], given)
    return args


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args = _late_positional(parser, args, extra)
    try:
        return args.run(args)
    except UsageError as exc:
        print(printable(f"emstream: error: {exc}", one_line=True), file=sys.stderr)
        return 2
    except (CommandError, CheckpointError) as exc:
        print(printable(f"emstream: error: {exc}", one_line=True), file=sys.stderr)
        return 1
    except BrokenPipeError:  # pragma: no cover - e.g. `emstream score ... | head`
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(printable(f"emstream: error: {where}{exc.strerror or exc}", one_line=True),
              file=sys.stderr)
        return 1
    except ValueError as exc:
        print(printable(f"emstream: error: {exc}", one_line=True), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except MemoryError:  # (a traceback: a wide model's D x D covariances in --json or diff)
        hint = (" (a model of many features: its D x D covariance matrices; `emstream "
                "inspect` without --json does without them)"
                if args.run in (cmd_inspect, cmd_diff) else "")
        print(f"emstream: error: not enough memory{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
