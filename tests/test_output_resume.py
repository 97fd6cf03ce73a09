"""Per-point output across restarts: a file holds each line once (``output.cut_back``).

A restart reads and learns again the rows after its checkpoint, so the lines written for them
since (and a line a kill cut short) are cut from a per-point output file first; a pipe's
lines cannot be taken back.  Only the same file, unchanged up to the checkpoint's end, and only
this daemon's lines are cut.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from emstreamd.sinks import PointSink

from .conftest import ROOT

DAEMON = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml"),
          "--set", "status.every_seconds=0"]
SETTINGS = {"format": "csv", "header": False}


def _sink(path):
    return PointSink(open(path, "ab"), SETTINGS)


def _lines(*numbers, key=None):
    """Per-point lines as the daemon writes them (csv)."""
    return b"".join(f"{n},{'' if key is None else key + ','}0,0.900000,1.2500,0.50000000,0\n"
                    .encode() for n in numbers)


def test_a_restart_cuts_the_lines_after_the_checkpoint_and_a_partial_one(tmp_path):
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(101, 102))
    sink = _sink(path)
    mark = sink.mark()
    sink.out.write(_lines(103) + b"104,1,0.8")  # then killed mid-line
    sink.out.close()
    _sink(path).cut_back(mark, 103)
    assert path.read_bytes() == _lines(101, 102)


def test_another_writer_s_lines_a_rewritten_file_or_another_file_are_left(tmp_path):
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(101))
    sink = _sink(path)
    mark = sink.mark()
    sink.out.close()
    cases = {
        "a note": _lines(101, 102) + b"20261207,deploy v2.3 by alice\n",
        "an earlier line": _lines(101, 55),
        # another daemon's lines, numbered from its first line again
        "another run": _lines(101, 102, 103, 101, 102),
        "a number of 5,000 digits": _lines(101) + b"9" * 5000 + b",0\n",
        # rotated by copytruncate and written on: as long again, but not the same bytes
        "rewritten": _lines(901, 902),
    }
    for name, content in cases.items():
        path.write_bytes(content)
        _sink(path).cut_back(mark, 102)
        assert path.read_bytes() == content, name
    other = tmp_path / "other.csv"
    other.write_bytes(_lines(101, 102))
    _sink(other).cut_back(mark, 102)  # another file (its inode is not the mark's)
    assert other.read_bytes() == _lines(101, 102)


def test_a_file_emptied_since_the_checkpoint_is_said_to_have_lost_its_lines(tmp_path, caplog):
    """The README's own command run again, ``... > scores.csv``: the shell empties the file
    before the daemon starts, and the lines before the checkpoint were gone without a word
    (found by an attack helper)."""
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(101, 102))
    sink = _sink(path)
    mark = sink.mark()
    sink.out.close()
    with open(path, "r+b") as handle:  # as a shell's > leaves it
        handle.truncate(0)
    with caplog.at_level("WARNING", logger="emstreamd"):
        _sink(path).cut_back(mark, 103)
    assert path.read_bytes() == b""
    assert f"fewer than the {len(_lines(101, 102))} the checkpoint left in it: its lines up to the " \
           "checkpoint are no longer in it (emptied by a shell's >" in caplog.text, caplog.text


def test_more_than_64_mib_written_after_the_checkpoint_is_cut_back_too(tmp_path):
    """A restart read what was written after the checkpoint into memory, up to 64 MiB: beyond
    (checkpoint.every_points=5000000: 75 MB), its own lines were said to be another writer's,
    left, and written again, 1,958,500 of them twice (found by an attack helper).  They are
    checked a chunk at a time now; another writer's line far into them still leaves them."""
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(101, 102))
    sink = _sink(path)
    mark = sink.mark()
    after = _lines(*range(103, 1_900_103))
    assert len(after) > 64 << 20
    sink.out.write(after + b"1900103,1,0.8")  # then killed mid-line
    sink.out.close()
    _sink(path).cut_back(mark, 103)
    assert path.read_bytes() == _lines(101, 102)
    content = _lines(101, 102) + after + b"note by hand\n" + _lines(1_900_103)
    path.write_bytes(content)
    _sink(path).cut_back(mark, 103)
    assert path.read_bytes() == content


def test_a_restart_with_another_output_format_cuts_the_lines_of_the_first(tmp_path, caplog):
    """Restarted with output.format jsonl after a run that wrote csv: its csv lines after the
    checkpoint were read as jsonl, said to be another writer's, left, and written again, with
    no word of the change (found by an attack helper)."""
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(101, 102))
    sink = _sink(path)
    mark = sink.mark()
    assert mark["format"] == "csv"
    sink.out.write(_lines(103, 104))
    sink.out.close()
    with caplog.at_level("WARNING", logger="emstreamd"):
        PointSink(open(path, "ab"), {**SETTINGS, "format": "jsonl"}).cut_back(mark, 103)
    assert path.read_bytes() == _lines(101, 102)
    assert "output.format is jsonl since the checkpoint, which wrote csv" in caplog.text


def test_an_empty_file_s_mark_does_not_cut_a_file_that_took_its_inode(tmp_path):
    """A mark of an empty output: its digest (of no bytes) matches any file; after the file
    was removed, another one that took its inode was cut to nothing."""
    first = tmp_path / "x.csv"
    first.touch()
    sink = _sink(first)
    mark = sink.mark()
    sink.out.close()
    first.unlink()
    second = tmp_path / "results.csv"
    second.write_bytes(_lines(1, 2, 3))
    mark["inode"] = second.stat().st_ino  # (as if the system had given it the same inode)
    _sink(second).cut_back(mark, 1)
    assert second.read_bytes() == _lines(1, 2, 3)


def test_a_cut_of_a_descriptor_shared_with_earlier_runs_leaves_no_hole(tmp_path):
    """A restart loop's output redirected once with > (one descriptor, not appending, for
    every run): the cut left the shared offset past the end, and the next line came after
    a hole of NUL bytes."""
    path = tmp_path / "out.csv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, _lines(101))
    sink = PointSink(os.fdopen(os.dup(fd), "wb"), SETTINGS)
    mark = sink.mark()
    os.write(fd, _lines(102, 103))  # the run killed after its checkpoint
    again = PointSink(os.fdopen(os.dup(fd), "wb"), SETTINGS)
    again.cut_back(mark, 102)
    again.out.write(_lines(102))
    again.out.flush()
    os.close(fd)
    assert path.read_bytes() == _lines(101, 102)


def test_keyed_lines_rise_key_by_key(tmp_path):
    path = tmp_path / "out.csv"
    path.write_bytes(_lines(7, key="a"))
    sink = _sink(path)
    mark = sink.mark()
    # (with its header: a keyed daemon's first checkpoints come before any line)
    sink.out.write(b"line,key,label,probability,surprise,score,anomaly\n" + _lines(12, key="a")
                   + _lines(9, key="b") + _lines(15, key="a"))
    sink.out.close()
    _sink(path).cut_back(mark, 1, keyed=True)
    assert path.read_bytes() == _lines(7, key="a")


def test_a_header_is_written_once_into_a_file_appended_to(tmp_path):
    path = tmp_path / "out.csv"
    update = type("U", (), {"resp": np.array([[1.0]]), "surprise": np.array([1.0]),
                            "anomaly": np.array([False]), "score": np.array([0.5])})
    for line in (7, 8):
        sink = PointSink(open(path, "ab"), {"format": "csv", "header": True})
        assert sink.write(np.array([line]), None, update) is None
        sink.out.close()
    assert path.read_text().splitlines()[0].startswith("line,")
    assert path.read_text().count("line,") == 1


def _kill_by_progress(command, out, rng, kills_wanted=8, low=2_000, high=20_000):
    """Run ``command`` (stdout appended to ``out``) again and again, each run killed once it
    has written ``low`` to ``high`` bytes more, ``kills_wanted`` times, then to its end;
    returns how many kills there were."""
    out.touch()
    kills = 0
    while True:
        target = out.stat().st_size + int(rng.integers(low, high))
        with open(out, "ab") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline:
                if kills < kills_wanted and out.stat().st_size >= target:
                    os.kill(process.pid, signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.002)
            process.wait()
        if process.returncode == 0:
            return kills


def test_with_rejects_the_output_is_exact_and_no_dead_letter_is_lost(tmp_path):
    """A series with a junk line every 37 lines, killed eight times: the per-point lines are
    the uninterrupted run's; dead letters stay at-least-once (several daemons share one
    input.dead_letter, and another's letters cannot be told from this one's: cut, they were
    lost), so every letter is there, some twice."""
    rng = np.random.default_rng(3)
    lines = [f"{v:.5f}" for v in rng.normal(size=20_000)]
    for i in range(5, len(lines), 37):
        lines[i] = f"junk {i}"
    data = tmp_path / "in.txt"
    data.write_text("\n".join(lines) + "\n")

    def command(name):
        return [*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / name),
                "--set", "checkpoint.every_points=700", "--set", "batch.max_rows=100",
                "--set", f"input.dead_letter={tmp_path / (name + '.rejected')}"]

    reference = subprocess.run(command("ref"), capture_output=True, timeout=300)
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]
    kills = _kill_by_progress(command("s"), tmp_path / "out.csv", rng)
    assert kills >= 4
    assert (tmp_path / "out.csv").read_bytes() == reference.stdout
    letters = (tmp_path / "s.rejected").read_bytes().splitlines()
    assert set(letters) == set((tmp_path / "ref.rejected").read_bytes().splitlines())


def test_with_cut_back_off_a_restart_cuts_nothing(tmp_path):
    """output.cut_back: false (several daemons append to one file): each line at least once,
    nothing cut."""
    rng = np.random.default_rng(5)
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{v:.5f}\n" for v in rng.normal(size=20_000)))
    command = [*DAEMON, "--input", str(data), "--checkpoint", str(tmp_path / "s"),
               "--set", "checkpoint.every_points=700", "--set", "batch.max_rows=100",
               "--set", "output.cut_back=false"]
    out = tmp_path / "out.csv"
    kills = _kill_by_progress(command, out, rng, kills_wanted=5)
    assert kills == 5
    numbers = [int(line.split(b",")[0]) for line in out.read_bytes().splitlines()
               if line.count(b",") == 5]
    assert set(numbers) == set(range(101, 20_001)) and len(numbers) > len(set(numbers))
    assert not (tmp_path / "s" / "emstreamd.output-start.json").exists()


def test_a_keyed_back_fill_killed_mid_run_appends_each_line_once(tmp_path):
    """Twelve keys interleaved; the daemon killed once it has written 2-20 kB more, eight
    times, each run appending to one output file: the file is an uninterrupted run's."""
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 12, 12_000)
    data = tmp_path / "keyed.txt"
    data.write_text("".join(f"k{k} {v:.5f}\n" for k, v in
                            zip(keys, rng.normal(size=keys.size) + keys)))
    args = ["--input", str(data), "--set", "input.key=0", "--set", "checkpoint.every_points=300",
            "--set", "keys.checkpoint_share=1", "--set", "batch.max_rows=100"]
    reference = subprocess.run([*DAEMON, *args, "--checkpoint", str(tmp_path / "ref")],
                               capture_output=True, timeout=300)
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]
    out = tmp_path / "out.csv"
    kills = _kill_by_progress([*DAEMON, *args, "--checkpoint", str(tmp_path / "s")], out, rng)
    assert kills >= 4
    assert out.read_bytes() == reference.stdout


def test_the_start_note_serves_only_the_same_file_and_goes_with_the_first_checkpoint(tmp_path):
    """A run killed before its first checkpoint notes where its lines began; the next run of
    another input (or of standard input) must not cut them, and once a checkpoint exists the
    note is gone: removing the checkpoints later cut every earlier run's lines."""
    rng = np.random.default_rng(4)
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("".join(f"{v:.5f}\n" for v in rng.normal(size=400_000)))
    second.write_text("".join(f"{v:.5f}\n" for v in rng.normal(size=3_000)))
    out, state = tmp_path / "out.csv", tmp_path / "state"
    note = state / "emstreamd.output-start.json"
    with open(out, "ab") as handle:
        process = subprocess.Popen([*DAEMON, "--input", str(first), "--checkpoint", str(state),
                                    "--set", "checkpoint.every_points=10000000"],
                                   stdout=handle, stderr=subprocess.DEVNULL)
        while out.stat().st_size < 20_000 and process.poll() is None:
            time.sleep(0.002)
        process.kill()
        process.wait()
    killed = out.read_bytes()
    assert note.exists() and len(killed) >= 20_000
    with open(out, "ab") as handle:
        done = subprocess.run([*DAEMON, "--input", str(second), "--checkpoint", str(state)],
                              stdout=handle, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert out.read_bytes().startswith(killed)  # another input: nothing of the first cut
    assert not note.exists()  # (its checkpoint written, the note went)
    kept = out.read_bytes()
    for path in state.glob("checkpoint-*.json"):
        path.unlink()
    with open(out, "ab") as handle:
        done = subprocess.run([*DAEMON, "--input", str(second), "--checkpoint", str(state)],
                              stdout=handle, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0
    assert out.read_bytes().startswith(kept)  # a fresh start cuts no earlier run's lines
