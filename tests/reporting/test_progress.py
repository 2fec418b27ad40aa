"""certssb.reporting.progress: a tqdm bar on a terminal; elsewhere log lines, at most one per interval while
unfinished and one final line (also when the step fails)."""

from __future__ import annotations

import logging
import sys

import pytest
from tqdm.auto import tqdm

from certssb.reporting import progress

LOGGER = "certssb.reporting.progress"


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_without_a_terminal_it_logs_one_final_line(caplog, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger=LOGGER), progress.progress_bar(3, "training") as bar:
        assert isinstance(bar, progress._LogBar)
        for _ in range(3):
            bar.update()
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("training: 3/3 done in ")  # the interval never passed


def test_log_lines_come_once_per_interval_and_never_for_the_last_step(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 31.0, 40.0, 70.0, 71.0])  # start, then one reading per update and close
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        bar = progress._LogBar(total=4, desc="votes", interval=30.0)
        for _ in range(4):
            bar.update()  # at 10 s (too soon), 31 s (logged), 40 s (too soon), 70 s (the last: close says it)
        bar.close()
    assert _lines(caplog) == ["votes: 2/4 (31 s)", "votes: 4/4 done in 71.0 s"]


def test_the_final_line_is_written_when_the_step_fails(caplog, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(RuntimeError):
        with progress.progress_bar(5, "certify") as bar:
            bar.update(2)
            raise RuntimeError("stopped")
    assert len(_lines(caplog)) == 1 and _lines(caplog)[0].startswith("certify: 2/5 done in ")


def test_on_a_terminal_it_is_a_tqdm_bar(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress.progress_bar(2, "training") as bar:
        assert isinstance(bar, tqdm) and bar.total == 2 and bar.desc == "training"
        bar.update(2)
        assert bar.n == 2
