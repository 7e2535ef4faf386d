"""What a run shows its user: on a terminal, one live progress line (clock,
bar and ETA when the number of clocks is known, rate, the reported metrics)
that log lines pass above and that gives way to the summary at the end;
without a terminal, no live records at all.
"""

import os
import pty
import subprocess
import sys

import pytest

from conftest import HERE
from paracel.progress import MARK, LiveLine, progress_text

ROOT = os.path.dirname(HERE)


def test_progress_text_without_and_with_a_known_number_of_clocks():
    assert progress_text(3, 2.0) == "clock 3  2.0 s  1.5 clocks/s"
    assert progress_text(50, 10.0, 100, {"rmse": 0.123456789, "epoch": 4}) == (
        "clock 50/100 [##########..........]  50%  10.0 s  5.0 clocks/s  ETA 10 s  "
        "rmse=0.123457  epoch=4")
    assert "ETA" not in progress_text(100, 10.0, 100)


def test_live_line_draws_records_over_each_other_and_logs_above():
    live = LiveLine()
    assert live.feed(b"a log line\n") == b"a log line\n"
    assert live.feed(f"{MARK}clock 1\n".encode()) == b"\r\x1b[Kclock 1"
    assert live.feed(f"{MARK}clock 2\n".encode()) == b"\r\x1b[Kclock 2"
    assert live.feed(b"warning\n") == b"\r\x1b[Kwarning\nclock 2"
    assert live.close() == b"\r\x1b[K"


def run_on_terminal(argv, timeout=120):
    """Run ``argv`` with a pseudo-terminal as stdout and stderr; all it wrote."""
    main, child = pty.openpty()
    process = subprocess.Popen(argv, stdout=child, stderr=child, cwd=ROOT)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:    # the child side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=timeout)
    os.close(main)
    return process.returncode, b"".join(chunks).decode()


@pytest.mark.mpi
def test_a_terminal_shows_one_live_line_then_the_summary(tmp_path):
    code, text = run_on_terminal([sys.executable, "-m", "paracel.run", "conf/mf.json",
                                  "--output", str(tmp_path / "out"), "--set",
                                  "params.epochs=40"])
    assert code == 0, text
    records = text.split("\r\x1b[K")
    assert any(record.startswith("clock ") and "/200 [" in record for record in records)
    assert MARK not in text                      # records are drawn, never printed
    assert "share_sums" not in text              # traced, not reported: not shown
    summary = records[-1]
    assert summary.startswith("paracel: mf finished") and "results in" in summary


@pytest.mark.mpi
def test_without_a_terminal_there_are_no_live_records(tmp_path):
    finished = subprocess.run([sys.executable, "-m", "paracel.run", "conf/mf.json", "--output",
                               str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "\r" not in finished.stderr and MARK not in finished.stderr
    assert finished.stdout.startswith("paracel: mf finished")
