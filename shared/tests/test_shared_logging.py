"""Logging levels, one handler however often set up, progress bars quiet off-terminal and off the main process."""

from __future__ import annotations

import io
import logging

import sixlab_shared.device as device_mod
from sixlab_shared import progress, progress_enabled, setup_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verbosity_levels_and_single_handler():
    root = logging.getLogger()
    for verbose, level in ((0, logging.WARNING), (1, logging.INFO), (2, logging.DEBUG)):
        setup_logging(verbose)
        assert root.level == level
    ours = [h for h in root.handlers if h.get_name() == "sixlab-stderr"]
    assert len(ours) == 1
    setup_logging(0)


def test_non_main_process_logs_warnings_only(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    setup_logging(2)
    assert logging.getLogger().level == logging.WARNING
    monkeypatch.setenv("RANK", "0")
    setup_logging(0)


def test_progress_only_on_a_terminal_in_the_main_process(monkeypatch):
    assert not progress_enabled(io.StringIO())
    assert progress_enabled(_Tty())
    monkeypatch.setattr(device_mod, "process_rank", lambda: 1)
    monkeypatch.setattr("sixlab_shared.logging.is_main_process", lambda: False)
    assert not progress_enabled(_Tty())


def test_progress_iterates_everything_when_disabled():
    assert list(progress(range(4), disable=True)) == [0, 1, 2, 3]
