"""Compressed data files (gzip, bzip2, xz): read as the lines they hold, by the library's
``DataFile``, by ``emstreamd --input`` (exactly as the plain file, killed and resumed too) and
by ``emstream fit``.  Every line of a compressed back-fill used to be rejected as invalid
UTF-8, with exit 0."""

import bz2
import gzip
import lzma
import signal
import subprocess
import sys

import numpy as np
import pytest

from emstream import checkpoint
from emstream.cli import main
from emstream.compressed import DataFile, compression

from .conftest import ROOT
from .test_daemon import _wait_for

DAEMON = [sys.executable, "-m", "emstreamd", "--config", str(ROOT / "config.yaml")]
WRITERS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}


def _values(n, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    third = n // 3
    x = np.r_[rng.normal(-4, 1, third), rng.normal(0, 1, third), rng.normal(5, 1, n - 2 * third)]
    return "".join(f"{v:.5f}\n" for v in x[rng.permutation(n)]).encode()


def test_bytes_after_the_last_gzip_member_end_the_data_as_gzip_reads_them(tmp_path):
    """Trailing bytes that start no gzip member stopped the daemon (exit 74, "Not a gzipped
    file (b'ga')", no file named) at every restart; gzip -d reads the members before them.
    Damage inside a member is still an error naming the file."""
    values = _values(3000)
    tail = tmp_path / "tail.gz"
    tail.write_bytes(gzip.compress(values) + gzip.compress(values) + b"garbage")
    with DataFile(tail) as data:
        assert data.read() == values + values and data.trailing_garbage
        assert data.read() == b""
    with DataFile(tail) as data:  # in pieces, as a back-fill reads
        pieces = iter(lambda: data.read(4096), b"")
        assert b"".join(pieces) == values + values
    done = subprocess.run([*DAEMON, "--input", str(tail), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0
    assert "bytes after its last gzip member are not gzip data" in done.stderr.decode()
    assert checkpoint.load(tmp_path / "s").meta["counters"]["rows"] == 2 * values.count(b"\n")
    bad = tmp_path / "bad.gz"
    packed = gzip.compress(values)
    bad.write_bytes(packed[:10] + b"\xff" * 40 + packed[50:])
    with DataFile(bad) as data, pytest.raises(OSError, match=str(bad)):
        data.read()


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_data_file_reads_decompressed_bytes_at_decompressed_offsets(tmp_path, kind):
    plain = _values(5000)
    path = tmp_path / "values.txt.z"  # (told by its first bytes, not its name)
    path.write_bytes(WRITERS[kind](plain))
    assert compression(path) == kind
    with DataFile(path) as data:
        assert data.read(1000) == plain[:1000] and data.tell() == 1000
        data.seek(30_000)
        assert data.read() == plain[30_000:]
        assert 0 < data.raw_position() <= path.stat().st_size
        # (progress: where a decompressed offset lies in the file, by the ratio so far)
        assert data.in_file(data.tell()) == pytest.approx(data.raw_position())
    (tmp_path / "plain.txt").write_bytes(plain)
    assert compression(tmp_path / "plain.txt") is None


def test_damaged_and_unreadable_compressed_files_are_clear_errors(tmp_path):
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(_values(5000))[:-400])  # a copy that stopped early
    with DataFile(cut) as data, pytest.raises(OSError, match="damaged or cut-off gzip data"):
        data.read()
    zstd = tmp_path / "values.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    with pytest.raises(OSError, match=r"zstd-compressed.*zstd -dc"):
        DataFile(zstd)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_compressed_back_fill_equals_the_plain_one(tmp_path, kind):
    plain = _values(3000)
    (tmp_path / "plain.txt").write_bytes(plain)
    (tmp_path / "packed").write_bytes(WRITERS[kind](plain))
    runs = {}
    for name in ("plain.txt", "packed"):
        done = subprocess.run([*DAEMON, "--input", str(tmp_path / name), "--checkpoint",
                               str(tmp_path / f"state-{name}")], capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        runs[name] = (done.stdout, checkpoint.load(tmp_path / f"state-{name}"))
    assert runs["packed"][0] == runs["plain.txt"][0]
    assert runs["plain.txt"][0].count(b"\n") == 2900
    a, b = runs["plain.txt"][1], runs["packed"][1]
    np.testing.assert_array_equal(a.model.means_, b.model.means_)
    np.testing.assert_array_equal(a.model.covariances_, b.model.covariances_)
    assert a.meta["input"]["offset"] == b.meta["input"]["offset"] == len(plain)


def test_a_killed_compressed_back_fill_resumes_exactly(tmp_path):
    plain = _values(400_000, seed=1)  # (several 1 MiB blocks: checkpoints come between them)
    (tmp_path / "plain.txt").write_bytes(plain)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(plain))
    # (Small mini-batches: seconds of work after the first checkpoint, for the kill to land in.)
    settings = ["--no-output", "--set", "checkpoint.every_points=20000", "--set",
                "status.every_seconds=0", "--set", "batch.max_rows=100"]
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "plain.txt"), "--checkpoint",
                           str(tmp_path / "ref"), *settings], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    state = str(tmp_path / "state")
    process = subprocess.Popen([*DAEMON, "--input", str(tmp_path / "packed.gz"),
                                "--checkpoint", state, *settings], stderr=subprocess.PIPE)
    try:
        _wait_for(process, "checkpoint (scheduled)", timeout=120)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        process.kill()
        process.wait()
    middle = checkpoint.load(state).meta["input"]["offset"]
    assert 0 < middle < len(plain)  # killed part-way, after a checkpoint
    done = subprocess.run([*DAEMON, "--input", str(tmp_path / "packed.gz"), "--checkpoint",
                           state, *settings], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    reference, resumed = checkpoint.load(tmp_path / "ref"), checkpoint.load(state)
    np.testing.assert_array_equal(reference.model.means_, resumed.model.means_)
    np.testing.assert_array_equal(reference.model.covariances_, resumed.model.covariances_)
    assert resumed.meta["counters"]["rows"] == 400_000


def test_follow_refuses_a_compressed_file_and_fit_reads_one(tmp_path, capsys):
    path = tmp_path / "old.log.gz"
    path.write_bytes(gzip.compress(_values(600)))
    done = subprocess.run([*DAEMON, "--follow", str(path), "--checkpoint",
                           str(tmp_path / "s")], capture_output=True, timeout=60)
    assert done.returncode == 64 and b"gzip-compressed" in done.stderr
    assert main(["fit", str(path), "-k", "3", "-o", str(tmp_path / "m.json")]) == 0
    assert "fitted 3 components to 600 rows" in capsys.readouterr().err


def test_damaged_bzip2_data_is_named_with_its_file(tmp_path, capsys):
    """bzip2's own error ("Invalid data stream") named no file: emstreamd said "I/O error:
    Invalid data stream" and the emstream command "error: : Invalid data stream"."""
    damaged = bytearray(bz2.compress(_values(20000)))
    damaged[len(damaged) // 2] ^= 0xFF
    path = tmp_path / "mid.bz2"
    path.write_bytes(bytes(damaged))
    assert main(["fit", str(path), "-k", "1", "-o", str(tmp_path / "m.json")]) == 1
    assert f"error: {path}: damaged or cut-off bzip2 data (" in capsys.readouterr().err
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=60)
    assert done.returncode == 74
    assert f"{path}: damaged or cut-off bzip2 data".encode() in done.stderr


def test_the_command_cuts_a_line_that_never_ends_as_it_arrives(tmp_path, capsys):
    """A 100 KB gzip file holding one 100 MB line took `emstream fit` to 3 GB (a 2 GB line of
    a 2 MB file: killed at 24 GB): the command kept the line whole, as emstreamd does not."""
    import tracemalloc

    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(b"1\n2\n3\n" + b"x" * 30_000_000 + b"\n4\n5\n6\n"))
    tracemalloc.start()
    try:
        assert main(["fit", str(path), "-k", "1", "-o", str(tmp_path / "m.json")]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak  # (a few of the 1 MB blocks read at a time)
    err = capsys.readouterr().err
    assert "1 too long" in err and "fitted 1 components to 6 rows" in err


def test_a_compressed_file_ending_before_the_checkpoint_s_position_is_refused(tmp_path):
    """A shorter compressed file that begins as the one checkpointed (its first KiB) resumed
    "past its end": nothing learned, exit 0, where a plain file is refused (exit 65)."""
    values = _values(20000, seed=3)
    path, state = tmp_path / "x.gz", tmp_path / "s"
    path.write_bytes(gzip.compress(values + values, mtime=0))  # (the header holds the time)
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(state),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    path.write_bytes(gzip.compress(values, mtime=0))  # (the same first bytes, half as long)
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(state),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 65, done.stderr.decode()
    assert b"fewer than the checkpoint's position" in done.stderr


STREAM_WRITERS = {"bzip2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", sorted(STREAM_WRITERS))
def test_a_next_xz_or_bzip2_stream_damaged_in_its_first_bytes_is_an_error(tmp_path, kind,
                                                                          capsys):
    """The standard library's readers stopped at such a stream as at the end of the file:
    a back-fill of ``cat a.xz b.xz`` whose second stream was damaged ended after the first,
    exit 0, its rows lost without a word.  Damage at the start of the first stream was
    already an error; now a next stream's is too, naming the file."""
    values = _values(3000)
    second = STREAM_WRITERS[kind](values)
    path = tmp_path / f"two.{kind}"
    path.write_bytes(STREAM_WRITERS[kind](values) + second[:12] + b"\xff" * 20 + second[32:])
    with DataFile(path) as data, pytest.raises(OSError, match=f"{path}: damaged or cut-off"):
        data.read()
    with DataFile(path) as data, pytest.raises(OSError, match="damaged or cut-off"):
        while data.read(4096):  # (in pieces, as a back-fill reads)
            pass
    assert main(["fit", str(path), "-k", "1", "-o", str(tmp_path / "m.json")]) == 1
    assert f"{path}: damaged or cut-off {kind} data" in capsys.readouterr().err
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 74, done.stderr.decode()
    assert f"{path}: damaged or cut-off {kind} data".encode() in done.stderr


@pytest.mark.parametrize("kind", sorted(STREAM_WRITERS))
def test_bytes_after_the_last_xz_or_bzip2_stream_end_the_data_with_a_warning(tmp_path, kind,
                                                                            capsys):
    """As a gzip file's (above): every stream before them is read, and the daemon and the
    command say that the rest was not (they said nothing)."""
    values = _values(3000)
    path = tmp_path / f"tail.{kind}"
    path.write_bytes(STREAM_WRITERS[kind](values) + STREAM_WRITERS[kind](values) + b"garbage")
    with DataFile(path) as data:
        assert data.read() == values + values and data.trailing_garbage
        assert data.read() == b""
    done = subprocess.run([*DAEMON, "--input", str(path), "--checkpoint", str(tmp_path / "s"),
                           "--no-output"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert f"bytes after its last {kind} stream are not {kind} data".encode() in done.stderr
    assert checkpoint.load(tmp_path / "s").meta["counters"]["rows"] == 2 * values.count(b"\n")
    assert main(["fit", str(path), "-k", "1", "-o", str(tmp_path / "m.json")]) == 0
    err = capsys.readouterr().err
    rows = 2 * values.count(b"\n")
    assert f"{path}: bytes after its last {kind} stream are not {kind} data" in err
    assert f"to {rows} rows" in err


def test_concatenated_xz_streams_with_padding_read_and_seek_as_one_file(tmp_path):
    """Offsets count decompressed bytes across streams (a resume seeks into the second); the
    zero bytes xz allows between streams are no garbage."""
    first, second = _values(2000, seed=1), _values(2000, seed=2)
    path = tmp_path / "padded.xz"
    path.write_bytes(lzma.compress(first) + b"\0" * 8 + lzma.compress(second))
    with DataFile(path) as data:
        data.seek(len(first) + 100)
        assert data.tell() == len(first) + 100
        assert data.read() == second[100:] and not data.trailing_garbage
        data.seek(10)  # (back: from the start again)
        assert data.read(20) == first[10:30] and data.tell() == 30
        data.seek(10 ** 9)  # (beyond the end: at the end, as a plain file reads there)
        assert data.read() == b"" and data.tell() == len(first) + len(second)


@pytest.mark.parametrize("pack", [gzip.compress, bz2.compress, lzma.compress])
def test_a_compressed_file_piped_in_is_refused_in_one_line(tmp_path, pack):
    """gzip's bytes on stdin were taken for a header (a few lines) or every line rejected as
    invalid UTF-8, and the run ended as a success with nothing learned."""
    done = subprocess.run([*DAEMON, "--checkpoint", str(tmp_path / "s"), "--no-output"],
                          input=pack(_values(600)), capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 65 and "compressed: give the file with --input" in err, err
    assert err.count("emstreamd:") == 1 and not list((tmp_path / "s").glob("checkpoint-*"))
