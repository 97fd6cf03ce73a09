"""README.md, run: every fenced code block of the README is a test (one per block).

The blocks are found by parsing README.md (fences of ``` or ~~~, headings for the ids), so an
edited block is tested as edited.  Each test id is the slug of the block's heading and its
number under that heading (``fitting-with-dask-2``).  How a block runs depends on its language
tag, unless ``RUNNERS`` names a runner for its id:

* ``bash``/``sh``/``shell``: bash (``set -eo pipefail``) in a scratch copy of the repository's
  tracked files, with the installed package.  ``python``, ``python3``, ``pip`` and ``pytest``
  on the PATH are stand-ins (:data:`STAND_IN`) that record ``pip install`` and ``pytest``
  instead of running them: a README command never re-points the installed package at a
  scratch copy, nor runs the suite from inside the suite.  Everything else goes to this
  interpreter.
* ``console``: ``$ command`` lines run one by one (stdout and stderr together) and each
  output shown under a command must match what it prints, in substance (see
  :func:`differences`: times are masked, numbers may differ by one unit in the last digit the
  README shows, white space is not compared).
* ``python``: run as a script in a subprocess; ``print(...)  # shown`` lines say what the
  script prints, compared as above.  A block of ``>>>`` examples runs under doctest.
* ``yaml``: loaded with ``yaml.safe_load`` and validated by the daemon itself
  (``emstreamd --check-config --config BLOCK``); the effective configuration it prints must
  hold the block's values.
* ``text``: output or layouts, never run; each one needs a runner in ``RUNNERS`` that ties it
  to what produces it, or a reason in ``SKIPS``.

A block that is neither run nor in ``SKIPS`` fails, and so does an entry of ``RUNNERS``,
``SKIPS`` or ``SLOW`` that names no block.  Placeholders in the README (``producer``,
``/var/log/app/values.log``, ``tcp://host:8786`` ...) are replaced by explicit substitutions,
each with its reason; a substitution whose text is no longer in its block fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Stands in for python, python3, pip, pip3 and pytest in README commands: `pip install`,
# `pip uninstall` and `pytest` are recorded (one shell-quoted line each) and succeed, or, with
# README_TEST_PIP_DRY_RUN set, a `pip install` runs as `pip install --dry-run` (its output on
# stderr); anything else runs in this interpreter.
STAND_IN = r"""#!/usr/bin/env bash
name=$(basename "$0")
original=("$@")
case "$name" in
  pytest|py.test) set -- -m pytest "$@" ;;
  pip|pip3) set -- -m pip "$@" ;;
esac
if [[ "$1" == -m && ( "$2" == pytest || ( "$2" == pip && ( "$3" == install ||
      "$3" == uninstall ) ) ) ]]; then
  { printf '%q ' "$name" "${original[@]}"; echo; } >> "$README_TEST_RECORD"
  if [[ -n "$README_TEST_PIP_DRY_RUN" && "$2" == pip && "$3" == install ]]; then
    shift 3
    exec "$README_TEST_PYTHON" -m pip install --dry-run "$@" 1>&2
  fi
  exit 0
fi
exec "$README_TEST_PYTHON" "$@"
"""
STAND_IN_NAMES = ("python", "python3", f"python3.{sys.version_info.minor}", "pip", "pip3",
                  "pytest", "py.test")


# ------------------------------------------------------------------------------ Markdown
@dataclasses.dataclass(frozen=True)
class Block:
    id: str  # slug of the heading, then the block's number under it: "river-1"
    heading: str
    lang: str  # first word of the info string, lower case ("" without one)
    text: str
    line: int  # line of the opening fence in README.md (1-based)


_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")


def slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "top"


def parse_blocks(markdown: str) -> list[Block]:
    """Every fenced code block (CommonMark fences: ``` or ~~~, three or more, closed by the
    same character at least as long), with the ATX heading it sits under."""
    blocks: list[Block] = []
    counts: dict[str, int] = {}
    heading = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _FENCE.match(line)
        if opening and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            fence, indent = opening["fence"], len(opening["indent"])
            body = []
            j = i + 1
            while j < len(lines):
                closing = _FENCE.match(lines[j])
                if (closing and closing["fence"][0] == fence[0]
                        and len(closing["fence"]) >= len(fence) and not closing["info"].strip()):
                    break
                text = lines[j]
                body.append(text[min(indent, len(text) - len(text.lstrip(" "))):])
                j += 1
            else:
                raise ValueError(f"README.md line {i + 1}: code block never closed")
            key = slug(heading)
            counts[key] = counts.get(key, 0) + 1
            words = opening["info"].split()
            blocks.append(Block(f"{key}-{counts[key]}", heading,
                                words[0].lower() if words else "", "\n".join(body) + "\n",
                                i + 1))
            i = j + 1
            continue
        atx = _ATX.match(line)
        if atx:
            heading = (atx[2] or "").strip()
        i += 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
BY_ID = {b.id: b for b in BLOCKS}


def commands(text: str) -> list[str]:
    """The block's command lines: continuations joined; blank and comment-only lines dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
    return out


def adapt(block: Block, substitutions) -> str:
    """The block's text with each (README text, replacement, reason) applied; the README text
    must be there (else the README changed and the substitution is stale)."""
    text = block.text
    for old, new, _why in substitutions:
        assert old in text, f"{block.id}: {old!r} is no longer in the block; update the test"
        text = text.replace(old, new)
    return text


# ------------------------------------------------------------------------------ comparison
_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])")


def _split(line: str) -> tuple[str, list[str]]:
    line = _TIME.sub("<time>", line)
    numbers = _NUMBER.findall(line)
    shape = " ".join(_NUMBER.sub(" # ", line).split())
    return shape, numbers


# Lines a command prints or not depending on how long it runs; dropped from its output when
# the README does not show them.
TIME_DEPENDENT = (
    # emstream fit's progress, once the fit has run for a second (cli.py, _Progress)
    re.compile(r"emstream: EM iteration \d+: average log-likelihood \S+"),
)


def differences(shown: str, actual: str) -> list[str]:
    """How ``actual`` differs in substance from the output the README shows (empty: none).

    Lines correspond one to one, once the ``TIME_DEPENDENT`` lines the README does not show
    are dropped.  Times (ISO 8601) are masked on both sides: they change with every run.
    White space is not compared.  The text around numbers must be equal, and so must the
    numbers (the outputs shown are seeded, not random), except that a number shown with four
    or more significant digits may differ by one unit in its last digit (0.955248 +- 1e-6:
    rounding and BLAS noise, never a real change).
    """
    shown_lines = shown.rstrip("\n").splitlines()
    actual_lines = [ln for ln in actual.rstrip("\n").splitlines()
                    if not any(p.fullmatch(ln) and not any(p.fullmatch(s) for s in shown_lines)
                               for p in TIME_DEPENDENT)]
    if len(shown_lines) != len(actual_lines):
        return [f"{len(shown_lines)} lines shown, {len(actual_lines)} printed:\n"
                + "\n".join(actual_lines)]
    problems = []
    for n, (want, got) in enumerate(zip(shown_lines, actual_lines), 1):
        (want_shape, want_numbers), (got_shape, got_numbers) = _split(want), _split(got)
        if want_shape != got_shape or len(want_numbers) != len(got_numbers):
            problems.append(f"line {n}: shown {want!r}, printed {got!r}")
            continue
        for w, g in zip(want_numbers, got_numbers):
            mantissa = re.split(r"[eE]", w)[0].lstrip("+-").replace(".", "").lstrip("0")
            if len(mantissa) >= 4:
                step = 10.0 ** decimal.Decimal(w).as_tuple().exponent
                ok = abs(float(w) - float(g)) <= step * 1.0000001
            else:
                ok = float(w) == float(g)
            if not ok:
                problems.append(f"line {n}: {w} shown, {g} printed ({got!r})")
    return problems


def shown_prints(source: str) -> list[str] | None:
    """The outputs a Python block shows as ``print(...)  # output`` comments, in order; None
    when it shows none.  A block that shows some but has other prints cannot be tied."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string[1:].strip()
    prints = [(n, line) for n, line in enumerate(source.splitlines(), 1)
              if re.match(r"\s*print\(", line)]
    shown = [comments[n] for n, line in prints if n in comments and not line[0].isspace()]
    if not shown:
        return None
    assert len(shown) == len(prints), (
        "some print() lines show their output in a comment and some do not (or are indented): "
        "the output cannot be tied to them")
    return shown


# ------------------------------------------------------------------------------ running
@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list  # the stand-ins' record: argv of each pip install / pytest (program first)

    def ok(self, what: str) -> Run:
        assert self.returncode == 0, (f"{what}: exit {self.returncode}\n--- stdout\n"
                                      f"{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")
        return self


class Context:
    """One block's surroundings: scratch copies of the repository and how to run in them."""

    def __init__(self, request, pristine: Path, tmp: Path):
        self.request, self.pristine, self.tmp = request, pristine, tmp
        self.bin = pristine.parent / "bin"  # the stand-ins, beside the pristine copy
        self.copies = 0

    def scratch(self) -> Path:
        """A fresh copy of the repository's tracked files (as they are in the working tree)."""
        self.copies += 1
        repo = self.tmp / f"copy{self.copies}" / ROOT.name
        shutil.copytree(self.pristine, repo, symlinks=True)
        (repo.parent / "tmp").mkdir()
        return repo

    def env(self, repo: Path, record: Path) -> dict:
        env = dict(os.environ)
        env.update(PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
                   README_TEST_PYTHON=sys.executable, README_TEST_RECORD=str(record),
                   TMPDIR=str(repo.parent / "tmp"), MPLBACKEND="Agg",
                   PYTHONDONTWRITEBYTECODE="1")
        return env

    def run(self, argv, repo: Path, *, timeout: float, stdin=None, merge=False,
            env=None) -> Run:
        record = Path(repo.parent / "tmp" / f"record-{time.monotonic_ns()}")
        done = subprocess.run(argv, cwd=repo, env={**self.env(repo, record), **(env or {})},
                              stdin=stdin,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                              timeout=timeout, check=False)
        calls = ([shlex.split(line) for line in record.read_text().splitlines()]
                 if record.exists() else [])
        return Run(done.returncode, done.stdout.decode(errors="replace"),
                   (done.stderr or b"").decode(errors="replace"), calls)

    def bash(self, script: str, repo: Path, *, timeout: float, merge=False, strict=True,
             env=None) -> Run:
        """``script`` in bash (``strict``: stop at the first failing command or pipe)."""
        prelude = "set -eo pipefail\n" if strict else ""
        return self.run(["bash", "-c", prelude + script], repo, timeout=timeout,
                        stdin=subprocess.DEVNULL, merge=merge, env=env)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The tracked files (working-tree versions): what a fresh clone holds, with the edits in
    progress that the installed (editable) package runs."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    target = tmp_path_factory.mktemp("readme-pristine") / ROOT.name
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # (a tracked file deleted in the working tree is left out)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target.parent / "bin").mkdir()
    for name in STAND_IN_NAMES:
        (target.parent / "bin" / name).write_text(STAND_IN)
        (target.parent / "bin" / name).chmod(0o755)
    return target


@pytest.fixture
def context(request, pristine, tmp_path) -> Context:
    return Context(request, pristine, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Ends a process group this module started (by its id)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# ---------------------------------------------------------------- the set-up commands
SETUP_PROSE = ("5,000 lines", "four of them malformed: 4,996 readings",
               "from the 101st reading on", "`line,label,probability,surprise,score,anomaly`",
               "logs the rejected lines", "ends with a summary of", "`.ci/run` runs the same")


def _sensor_points(path: Path) -> tuple[int, int]:
    """(lines, readings that parse as finite numbers) of examples/sensor.txt."""
    lines = path.read_text().splitlines()
    good = 0
    for line in lines:
        with contextlib.suppress(ValueError):
            good += bool(np.isfinite(float(line)))
    return len(lines), good


def run_setup(block: Block, ctx: Context) -> None:
    """Line 1 runs for real, but for its ``pip install -e .``, which runs as ``pip install
    --dry-run -e .`` (the package must build and its requirements resolve; the installed,
    editable package is not re-pointed at a scratch copy that is about to vanish): the
    daemon's output is checked against the paragraph under the block.  Line 2's install is
    dry-run too, and its test command is not run (the suite would run itself): the commands
    it gives must be the ones ``.ci/run`` gives (its ``--quiet`` aside)."""
    readme = README.read_text(encoding="utf-8")
    for phrase in SETUP_PROSE:
        assert phrase in readme, f"the set-up paragraph no longer says {phrase!r}: update the test"
    main_job, suite = commands(block.text)
    repo = ctx.scratch()
    dry_run = {"README_TEST_PIP_DRY_RUN": "1"}
    done = ctx.bash(main_job, repo, timeout=300, env=dry_run).ok("the main job")
    assert done.calls == [["python", "-m", "pip", "install", "-e", "."]], done.calls
    assert "Would install emstream-" in done.stderr, done.stderr[-3000:]
    lines, good = _sensor_points(repo / "examples" / "sensor.txt")
    assert (lines, lines - good) == (5000, 4)  # 5,000 lines, four malformed: 4,996 readings
    rows = done.stdout.splitlines()
    assert len(rows) == good - 100, "one line per reading from the 101st on"
    assert rows[0].split(",")[0] == "101"
    for row in rows:
        _line, _label, probability, _surprise, score, anomaly = row.split(",")
        assert 0 <= float(probability) <= 1 and 0 <= float(score) <= 1 and anomaly in "01"
    rejected = re.findall(r"line (\d+) .*rejected \(([a-z -]+)\)", done.stderr)
    assert len(rejected) == 4, done.stderr
    summary = done.stderr[done.stderr.rindex("component"):].splitlines()
    assert summary[0].split()[:2] == ["component", "weight"] and len(summary) == 4, summary

    ran = ctx.bash(suite, repo, timeout=300, env=dry_run).ok("the test command (recorded)")
    assert "Would install emstream-" in ran.stderr, ran.stderr[-3000:]
    ci = ctx.run([str(repo / ".ci" / "run")], repo, timeout=120).ok(".ci/run (recorded)")

    def quiet_aside(calls):
        return [[a for a in c if not (c[1:4] == ["-m", "pip", "install"] and a == "--quiet")]
                for c in calls]

    assert any("pytest" in call for call in ran.calls), ran.calls
    assert quiet_aside(ci.calls) == ran.calls, (ci.calls, ran.calls)


# ---------------------------------------------------------------- the daemon's invocations
DAEMON_SUBSTITUTIONS = (
    ("/var/lib/emstream/state", "var/lib/emstream/state",
     "a system directory: the checkpoint goes inside the scratch copy instead"),
    ("/var/log/app/values.log", "values.log",
     "an application's log: a copy of examples/sensor.txt in the scratch copy instead"),
)
# `producer` stands for whatever writes the numbers; `backfill.txt` for a file to back-fill.
DAEMON_PRELUDE = "producer() { cat examples/sensor.txt; }\n"


def run_daemon(block: Block, ctx: Context) -> None:
    """Each line (stdin, follow, back-fill) runs in turn in one scratch copy on the bundled
    example; ``--follow`` never ends by itself (tail -F), so once every reading is reported
    it gets SIGTERM, which the README says ends the daemon with exit 0 and a checkpoint."""
    assert "producer |" in block.text and "backfill.txt" in block.text
    repo = ctx.scratch()
    shutil.copy(repo / "examples" / "sensor.txt", repo / "values.log")
    shutil.copy(repo / "examples" / "sensor.txt", repo / "backfill.txt")
    _, good = _sensor_points(repo / "examples" / "sensor.txt")
    reported = good - 100
    for line in commands(adapt(block, DAEMON_SUBSTITUTIONS)):
        checkpoint = Path(repo, shlex.split(line, comments=True)[
            shlex.split(line, comments=True).index("--checkpoint") + 1])
        if "--follow" in line:
            assert not re.search(r"[|;&]", line.split("#")[0]), "one simple command"
            out, err = repo.parent / "follow.out", repo.parent / "follow.err"
            with open(out, "wb") as o, open(err, "wb") as e:
                record = repo.parent / "tmp" / "record-follow"
                process = subprocess.Popen(["bash", "-c", "exec " + line], cwd=repo,
                                           env=ctx.env(repo, record), stdin=subprocess.DEVNULL,
                                           stdout=o, stderr=e, start_new_session=True)
                try:
                    deadline = time.monotonic() + 60
                    while (out.read_bytes().count(b"\n") < reported
                           and time.monotonic() < deadline and process.poll() is None):
                        time.sleep(0.2)
                    assert process.poll() is None, f"--follow ended: {err.read_text()[-2000:]}"
                    process.send_signal(signal.SIGTERM)
                    code = process.wait(60)
                finally:
                    _stop(process)
            assert code == 0, f"{line}: exit {code} after SIGTERM\n{err.read_text()[-2000:]}"
            stdout, stderr = out.read_text(), err.read_text()
        else:
            done = ctx.bash(DAEMON_PRELUDE + line, repo, timeout=180).ok(line)
            stdout, stderr = done.stdout, done.stderr
        expected = 0 if "--no-output" in line else reported
        assert stdout.count("\n") == expected, (line, stdout[-500:])
        assert "emstreamd: lifetime:" in stderr, stderr[-2000:]
        assert any(checkpoint.glob("checkpoint-*.json")), f"{line}: no checkpoint in {checkpoint}"


# ---------------------------------------------------------------- monitoring a time series
NAB_TABLE_HEADER = re.compile(r"^\| *detector.*\| *standard *\| *low FP *\| *low FN *\|")
NAB_OWN_ROWS = {"emstreamd, shipped config": "optimised",
                "the same, at its own threshold": "fixed", "its alerts": "alerts"}
NAB_HISTORICAL = ("the same daemon before this pipeline",  # earlier versions: not re-run
                  "the same daemon before provisional models alerted: scores / alerts",
                  "the same daemon with the raw value a season ago in the context",
                  "the same daemon with the season counted in points, not time",
                  "the same daemon with `reg_covar` an absolute 1e-6, and echoes of alerts",
                  "the same daemon with the warm-up's prior fading as `(r / n)²` for all rows",
                  "the same daemon without the recent level, optimised / alerts",
                  "the same daemon with the upkeep's judge uncapped, optimised / alerts")
NAB_TOLERANCE = 0.1  # points: one unit of the table's last digit (a score on a rounding edge)


def _nab_table(readme: str, after_line: int) -> dict[str, tuple[float, float, float]]:
    lines = readme.splitlines()[after_line:]
    start = next(i for i, ln in enumerate(lines) if NAB_TABLE_HEADER.match(ln))
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip().strip("*").strip() for c in ln.strip().strip("|").split("|")]
        name = re.sub(r" \(.*\)$", "", cells[0])
        if name in NAB_HISTORICAL:
            continue
        rows[name] = tuple(float(c.strip("*")) for c in cells[1:4])
    return rows


def _nab_printed(output: str) -> dict[str, tuple[float, float, float]]:
    """From bench_nab's output: the daemon's rows (threshold optimised / fixed) and the
    published detectors', per profile (standard, low FP, low FN)."""
    profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
    scores: dict[str, dict[str, float]] = {}
    section = profile = None
    for ln in output.splitlines():
        if ln.startswith("== NAB's threshold optimisation"):
            section = "optimised"
        elif ln.startswith("== at the daemon's own threshold"):
            section = "fixed"
        elif ln.startswith("== the daemon's own alerts"):
            section = "alerts"
        elif m := re.match(r"== profile (\S+)", ln):
            profile = m[1]
        elif profile in profiles and (m := re.match(r"(YOUR RESULTS|\S+) +[\d.]+ +(-?[\d.]+) ",
                                                    ln)):
            name = section if m[1] == "YOUR RESULTS" else m[1]
            if m[1] == "YOUR RESULTS" or section == "optimised":
                scores.setdefault(name, {})[profile] = float(m[2])
    return {name: tuple(by[p] for p in profiles) for name, by in scores.items()
            if len(by) == 3}


TIME_SERIES_KIT = ROOT.parent / "shared" / "nab"


def run_time_series(block: Block, ctx: Context) -> None:
    """The three lines as one script, in a scratch copy that has NAB's nyc_taxi.csv and the
    NAB kit beside it (where bench_nab.py looks, as beside the checkout).  The benchmark runs
    as written (34 series, about two minutes: marked slow) and its scores must be the
    README's NAB table, row by row, within NAB_TOLERANCE."""
    if not (TIME_SERIES_KIT / "score.py").exists():
        # The kit is not part of the repository: a clone elsewhere has no ../shared/nab.
        pytest.skip(f"the README's NAB commands need the NAB kit at {TIME_SERIES_KIT} "
                    "(beside the checkout), and it is not there")
    repo = ctx.scratch()
    (repo.parent / "shared").symlink_to(TIME_SERIES_KIT.parent)
    shutil.copy(TIME_SERIES_KIT / "data" / "realKnownCause" / "nyc_taxi.csv", repo)
    done = ctx.bash(block.text, repo, timeout=900).ok("monitoring a time series")
    scores = (repo / "scores.csv").read_text().splitlines()
    assert scores and all(len(s.split(",")) == 7 for s in scores), "line,time,label,...,anomaly"
    assert (repo / "nyc_taxi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = _nab_table(README.read_text(encoding="utf-8"), block.line)
    printed = _nab_printed(done.stdout)
    assert set(NAB_OWN_ROWS) <= set(table), table
    for name, shown in table.items():
        got = printed[NAB_OWN_ROWS.get(name, name)]
        assert np.allclose(got, shown, rtol=0, atol=NAB_TOLERANCE), (
            f"NAB table row {name!r}: README {shown}, bench_nab.py printed {got}")


# ---------------------------------------------------------------- many series
def run_many_series(block: Block, ctx: Context) -> None:
    """The five lines as one script, in a scratch copy with a fleet.csv of six hosts
    (web-1 .. web-6, host,timestamp,value, interleaved): every key gets a model, per-point
    lines carry the key, inspect lists the keys (by name, then the most anomalous first) and
    shows one, diff compares two."""
    repo = ctx.scratch()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(1, 7):
        values = k + np.sin(np.arange(600) * 2 * np.pi / 288) + 0.1 * rng.normal(size=600)
        rows += [(i + rng.uniform(0, 3), f"web-{k},{1.7e9 + 300 * i:.0f},{v:.4f}\n")
                 for i, v in enumerate(values)]
    rows.sort()
    (repo / "fleet.csv").write_text("host,timestamp,value\n" + "".join(r for _, r in rows))
    done = ctx.bash(block.text, repo, timeout=300).ok("many series in one daemon")
    scores = (repo / "scores.csv").read_text().splitlines()
    assert {line.split(",")[1] for line in scores} == {f"web-{k}" for k in range(1, 7)}
    assert len(scores) == 6 * 500  # each key's rows after its first mini-batch
    listing = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("web-")]
    assert listing[:6] == [f"web-{k}" for k in range(1, 7)], done.stdout
    assert sorted(listing[6:]) == listing[:6], done.stdout  # all six: fewer than ten
    assert "key         'web-3' of a state store" in done.stdout
    assert "divergence (Cauchy-Schwarz" in done.stdout


# ---------------------------------------------------------------- dask
DASK_BLOCK = "fitting-with-dask-3"  # starts the scheduler and a worker


def _dask_substitutions(port: int) -> dict:
    return {
        "client": ("tcp://scheduler-host:8786", f"tcp://127.0.0.1:{port}",
                   "a placeholder host: the scheduler started from the README's own lines"),
        "address": ("tcp://host:8786", f"tcp://127.0.0.1:{port}", "the same placeholder host"),
        "scheduler": ("dask scheduler ",
                      (f"dask scheduler --host 127.0.0.1 --port {port} "
                       "--dashboard-address 127.0.0.1:0 "),
                      ("a free port on the loopback interface: a test opens no port to the "
                       "network and does not collide with another scheduler")),
        "worker": ("dask worker ",
                   "dask worker --host 127.0.0.1 --dashboard-address 127.0.0.1:0 ",
                   "the worker, too, listens on the loopback interface only"),
    }


def _is_server(line: str) -> bool:
    """A ``dask scheduler`` or ``dask worker`` line (after any VAR=value assignments)."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        words.pop(0)
    return words[:2] in (["dask", "scheduler"], ["dask", "worker"])


@pytest.fixture(scope="module")
def dask_cluster(pristine, tmp_path_factory):
    """The scheduler and the worker, started by the README's own lines (``DASK_BLOCK``);
    yields (address, substitutions)."""
    block = BY_ID[DASK_BLOCK]
    port = _free_port()
    subs = _dask_substitutions(port)
    text = "\n".join(c for c in commands(block.text) if _is_server(c))
    servers = commands(adapt(dataclasses.replace(block, text=text),
                             [subs["scheduler"], subs["worker"], subs["address"]]))
    assert len(servers) == 2, servers
    logs = tmp_path_factory.mktemp("dask")
    ctx = Context(None, pristine, logs)
    repo = ctx.scratch()
    processes = []
    try:
        for n, line in enumerate(servers):
            with open(logs / f"server{n}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    ["bash", "-c", line], cwd=repo, env=ctx.env(repo, logs / "record"),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        address = f"tcp://127.0.0.1:{port}"
        wait = ("import sys; from distributed import Client\n"
                "with Client(sys.argv[1], timeout=60) as c: c.wait_for_workers(1, timeout=60)")
        ctx.run([sys.executable, "-c", wait, address], repo, timeout=150).ok(
            "scheduler and worker: " + "".join(p.read_text()[-1500:] for p in logs.glob("*.log")))
        yield address, subs
    finally:
        for process in reversed(processes):
            _stop(process)


def _dask_data(repo: Path) -> int:
    """data/: three CSV parts (3 columns) and the same rows as Parquet; the rows in all."""
    import pandas as pd

    rng = np.random.default_rng(0)
    (repo / "data").mkdir()
    for part in range(3):
        n = 2000
        X = np.c_[rng.choice([-4.0, 0.0, 5.0], n) + rng.normal(size=n), rng.normal(size=n),
                  rng.choice([1.0, 9.0], n) + rng.normal(size=n)]
        np.savetxt(repo / "data" / f"part-{part}.csv", X, delimiter=",", fmt="%.6f")
        pd.DataFrame(X, columns=["a", "b", "c"]).to_parquet(repo / "data" / f"part-{part}.parquet")
    return 3 * 2000


def run_dask_shell(block: Block, ctx: Context) -> None:
    """Command by command in a scratch copy with data/ (CSV parts and Parquet files of the
    same rows; the README's globs and directory pick theirs), the address substituted; the
    server lines were started by the ``dask_cluster`` fixture.  Every fit must report all
    the rows."""
    _address, subs = ctx.request.getfixturevalue("dask_cluster")
    repo = ctx.scratch()
    rows = _dask_data(repo)
    fits = [c for c in commands(adapt(block, [subs["address"]])) if not _is_server(c)]
    assert fits
    for line in fits:
        done = ctx.bash(line, repo, timeout=300).ok(line)
        assert re.search(rf"fitted 3 components to {rows} rows", done.stderr), done.stderr


def run_dask_python(block: Block, ctx: Context) -> None:
    """The block with its scheduler address replaced by the cluster the README's own
    scheduler and worker lines started; 20,000,000 rows as written (marked slow)."""
    _address, subs = ctx.request.getfixturevalue("dask_cluster")
    run_python(dataclasses.replace(block, text=adapt(block, [subs["client"]])), ctx)


# ---------------------------------------------------------------- text blocks tied to code
_KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)":|([{}])')
OPAQUE = {("content", "meta"), ("model", "params")}  # "{...}" in the README: not spelled out


def _layout_paths(text: str) -> set[tuple]:
    """Key paths of the README's checkpoint layout (JSON-like, with ``null | {...}``)."""
    stack, last, paths = [], None, set()
    for key, brace in _KEY.findall(text):
        if key:
            last = key
            paths.add((*[k for k in stack if k], key))
        elif brace == "{":
            stack.append(last)  # the object is the value of the key before it (or of none)
            last = None
        else:
            stack.pop()
            last = None
    return paths


def _json_paths(data, prefix=()) -> set[tuple]:
    out = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, key)
            out.add(path)
            if path[-2:] not in OPAQUE:
                out |= _json_paths(value, path)
    return out


def run_checkpoint_layout(block: Block, ctx: Context) -> None:
    """The layout must name the keys real checkpoints hold, no more, no fewer: checkpoints
    written by the console block's ``emstream fit`` and by the daemon within its warm-up
    (which fills the optional parts: warm-up buffer, iterate, average, last fit)."""
    console = next(b for b in BLOCKS if b.heading == block.heading and b.lang == "console")
    fit = next(ln[2:] for ln in console.text.splitlines() if ln.startswith("$ emstream fit"))
    written = shlex.split(fit)[shlex.split(fit).index("-o") + 1]
    repo = ctx.scratch()
    ctx.bash(fit, repo, timeout=120).ok(fit)
    (repo / "head.txt").write_text(
        "".join((repo / "examples" / "sensor.txt").read_text().splitlines(True)[:500]))
    ctx.bash("emstreamd --config config.yaml --input head.txt --checkpoint warmup --no-output",
             repo, timeout=120).ok("daemon in its warm-up")
    real = set()
    for path in [repo / written, *sorted((repo / "warmup").glob("checkpoint-*.json"))]:
        real |= _json_paths(json.loads(path.read_text()))
    shown = _layout_paths(block.text)
    assert not shown - real, f"the README names keys no checkpoint holds: {sorted(shown - real)}"
    assert not real - shown, f"keys checkpoints hold that the README omits: {sorted(real - shown)}"
    schema = json.loads((repo / written).read_text())["content"]["model"]["schema"]
    assert f'"schema": "{schema}"' in block.text, f"the schema is {schema}"


def run_module_map(block: Block, ctx: Context) -> None:
    """Every module the map names exists, and every module is named (``__init__`` and
    ``__main__`` aside): the emstream part by file name, the daemon part by name."""
    core, daemon = block.text.split("daemon/emstreamd/", 1)
    named = set(re.findall(r"\b(\w+\.py)\b", core))
    tracked = ctx.pristine  # (a module being written, not yet tracked, is not counted)
    present = {p.name for p in (tracked / "emstream").glob("*.py")} - {"__init__.py",
                                                                       "__main__.py"}
    assert named <= present, f"named but missing: {sorted(named - present)}"
    assert present <= named, f"emstream modules the map omits: {sorted(present - named)}"
    words = set(re.findall(r"\b\w+\b", daemon))
    modules = {p.stem for p in (tracked / "daemon" / "emstreamd").glob("*.py")} - {
        "__init__", "__main__"}
    assert modules <= words, f"emstreamd modules the map omits: {sorted(modules - words)}"
    files = set(re.findall(r"\b(\w+\.(?:py|yaml))\b", daemon))
    missing = {f for f in files if not (tracked / "daemon" / "emstreamd" / f).exists()}
    assert not missing, f"named but missing: {sorted(missing)}"


# ---------------------------------------------------------------- the runners by language
def run_bash(block: Block, ctx: Context) -> None:
    ctx.bash(block.text, ctx.scratch(), timeout=600).ok(block.id)


def run_console(block: Block, ctx: Context) -> None:
    repo = ctx.scratch()
    steps: list[list] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append([line[2:], []])
        else:
            assert steps, f"{block.id}: output before the first $ command"
            steps[-1][1].append(line)
    for command, shown in steps:
        done = ctx.bash(command, repo, timeout=300, merge=True, strict=False).ok(command)
        problems = differences("\n".join(shown), done.stdout)
        assert not problems, f"$ {command}\n" + "\n".join(problems)


def _script_path(repo: Path, name: str) -> Path:
    """Where a block's script goes: outside the copy, so that it imports the installed package,
    and in a directory of its own, which Python puts first on ``sys.path``: beside the copy, a
    checkout named ``emstream`` (``git clone``'s default) would shadow the package."""
    folder = repo.parent / "block"
    folder.mkdir(exist_ok=True)
    return folder / name


def run_python(block: Block, ctx: Context) -> None:
    repo = ctx.scratch()
    if block.text.lstrip().startswith(">>>"):
        script = _script_path(repo, "block.txt")
        script.write_text(block.text)
        ctx.run([sys.executable, "-m", "doctest", "-o", "NORMALIZE_WHITESPACE", "-o", "ELLIPSIS",
                 str(script)], repo, timeout=600).ok(block.id)
        return
    script = _script_path(repo, "block.py")
    script.write_text(block.text)
    shown = shown_prints(block.text)
    done = ctx.run([sys.executable, str(script)], repo, timeout=600).ok(block.id)
    if shown is not None:
        problems = differences("\n".join(shown), done.stdout)
        assert not problems, "\n".join(problems)


def run_yaml(block: Block, ctx: Context) -> None:
    config = yaml.safe_load(block.text)
    assert isinstance(config, dict), "a configuration is a mapping of sections"
    repo = ctx.scratch()
    path = repo.parent / "block.yaml"
    path.write_text(block.text)
    done = ctx.run(["emstreamd", "--check-config", "--config", str(path)], repo,
                   timeout=120).ok(f"emstreamd --check-config on {block.id}")
    effective = yaml.safe_load(done.stdout)
    for section, values in config.items():
        for key, value in (values or {}).items():
            assert effective[section][key] == value, (section, key)


BY_LANGUAGE = {"bash": run_bash, "sh": run_bash, "shell": run_bash, "console": run_console,
               "python": run_python, "py": run_python, "yaml": run_yaml, "yml": run_yaml}

# Blocks with their own runner (placeholders to fill, output shown elsewhere, not commands).
RUNNERS = {
    "emstream-1": run_setup,
    "the-daemon-emstreamd-1": run_daemon,
    "monitoring-a-time-series-1": run_time_series,
    "many-series-in-one-daemon-1": run_many_series,
    "the-emstream-command-and-checkpoints-2": run_checkpoint_layout,
    "fitting-with-dask-1": run_dask_python,
    "fitting-with-dask-2": run_dask_shell,
    "fitting-with-dask-3": run_dask_shell,
    "the-core-1": run_module_map,
}
# Blocks not run, with the reason (none at present: every block runs).
SKIPS: dict[str, str] = {}
# Run as written although slow: no flag makes them smaller.
SLOW = {
    "monitoring-a-time-series-1": "bench_nab.py runs the daemon on all 34 NAB series and scores "
                                  "them three times: about two minutes on 2 cores",
    "fitting-with-dask-1": "20,000,000 rows fitted on the cluster: about 40 s",
}


def _param(block: Block):
    marks = [pytest.mark.slow] if block.id in SLOW else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block(block: Block, context: Context) -> None:
    if block.id in SKIPS:
        pytest.skip(SKIPS[block.id])
    runner = RUNNERS.get(block.id) or BY_LANGUAGE.get(block.lang)
    assert runner is not None, (
        f"README.md line {block.line}: a {block.lang or 'untagged'} block that is neither run "
        f"nor in SKIPS: give it a runner (RUNNERS) or a reason (SKIPS)")
    runner(block, context)


def test_the_tables_name_existing_blocks() -> None:
    for table in (RUNNERS, SKIPS, SLOW):
        stale = set(table) - set(BY_ID)
        assert not stale, f"no README block has the id(s) {sorted(stale)}: {sorted(BY_ID)}"
    assert not set(RUNNERS) & set(SKIPS)


def test_every_block_has_a_language_tag() -> None:
    untagged = [b.line for b in BLOCKS if not b.lang]
    assert not untagged, f"README.md code blocks without a language tag at lines {untagged}"


# ------------------------------------------------------------------- the harness itself
SAMPLE = """# Title
text
```bash
echo one
```
## Second `part`
~~~~python title
print(1)
```
not a fence end
~~~~
  ```
  indented
  ```
"""


def test_parse_blocks_finds_fences_and_headings() -> None:
    blocks = parse_blocks(SAMPLE)
    assert [(b.id, b.lang, b.line) for b in blocks] == [
        ("title-1", "bash", 3), ("second-part-1", "python", 7), ("second-part-2", "", 12)]
    assert blocks[1].text == "print(1)\n```\nnot a fence end\n"
    assert blocks[2].text == "indented\n"
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```bash\necho\n")


def test_differences_is_loose_only_where_it_says() -> None:
    assert not differences("written  2026-11-22T01:01:00.765580Z\n1,1,0.955248,3.6693",
                           "written 2030-01-01T00:00:00.000001Z\n1,1,0.955249,3.6693")
    assert not differences("[-4.   0.   5.1]", "[-4.   0.   5.1]")
    assert differences("[-4.   0.   5.1]", "[-4.   0.   5.2]")
    assert differences("[-4.   0.   5.1]", "[-4.2  0.   5.1]")
    assert differences("std 4.944", "std 4.946") and not differences("std 4.944", "std 4.945")
    progress = "emstream: EM iteration 3: average log-likelihood -2.48"
    assert not differences("emstream: fitted", f"{progress}\nemstream: fitted")
    assert differences(f"{progress}\nemstream: fitted", "emstream: fitted")
    assert differences("in 11 iterations", "in 12 iterations")
    assert differences("1,1,0.955248", "1,1,0.955258")
    assert differences("fitted 3 components", "fitted 3 clusters")
    assert differences("a\nb", "a")


def test_shown_prints() -> None:
    assert shown_prints("x = 1  # not shown\nprint(x)  # 1\nprint('#')  # #\n") == ["1", "#"]
    assert shown_prints("print(1)\n") is None
    with pytest.raises(AssertionError):
        shown_prints("print(1)  # 1\nprint(2)\n")


def test_yaml_and_doctest_runners_fail_on_a_broken_block(context) -> None:
    good = Block("x-1", "x", "yaml", "input:\n  max_line_bytes: 8192\n", 1)
    run_yaml(good, context)
    with pytest.raises(AssertionError, match="exit 78"):
        run_yaml(dataclasses.replace(good, text="input:\n  max_line_byte: 8192\n"), context)
    doc = Block("x-2", "x", "python", ">>> 1 + 1\n2\n", 1)
    run_python(doc, context)
    with pytest.raises(AssertionError, match="exit 1"):
        run_python(dataclasses.replace(doc, text=">>> 1 + 1\n3\n"), context)


def test_a_block_imports_the_installed_package_beside_a_checkout_named_emstream(tmp_path):
    """``git clone`` names the checkout ``emstream``; a block's script must not sit beside it,
    where that folder would shadow the installed package as an empty namespace package."""
    repo = tmp_path / "copy1" / "emstream"
    repo.mkdir(parents=True)  # a checkout's root: no __init__.py
    script = _script_path(repo, "block.py")
    script.write_text("import emstream\nprint(emstream.__file__)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() not in ("", "None"), done
