"""Output a person reads: while Airflow (``dag.test()``) and Great Expectations run in this
process, everything they write goes to a log file, and only cutover's own progress lines
(rows, items/s, ETA) and warnings reach the terminal.

The redirection is at the file-descriptor level, so it holds whatever prints: Airflow's
structlog loggers (they write to stdout), the stdlib handlers it configures, Great
Expectations' loggers, Python warnings and anything a C extension writes.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

PROGRESS_LOGGER = "cutover"  # cutover.progress logs its lines here


class ProgressEcho(logging.Handler):
    """Shows cutover's progress lines on ``stream``, thinned to what a person reads: per
    label (``load Users.CART.0000``) one line every ``every`` seconds, and always the label's
    last line (its final count and rate), printed when the next label starts or at
    :meth:`flush_pending`. Warnings and errors of ``cutover.*`` loggers are shown as they come.
    """

    def __init__(self, stream: TextIO, every: float = 10.0) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.every = every
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        self._label: str | None = None
        self._shown_at = 0.0
        self._pending: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self._write(record)
            return
        if record.name != PROGRESS_LOGGER:
            return
        label = record.getMessage().split(": ", 1)[0]
        if label != self._label:
            self.flush_pending()
            self._label, self._shown_at = label, record.created
            self._pending = record  # a short step shows only its last line
            return
        if record.created - self._shown_at >= self.every:
            self._pending = None
            self._shown_at = record.created
            self._write(record)
        else:
            self._pending = record

    def flush_pending(self) -> None:
        self.acquire()
        try:
            if self._pending is not None:
                self._write(self._pending)
                self._pending = None
            self._label = None
        finally:
            self.release()

    def _write(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)


class QuietRun:
    """What :func:`quiet` yields: ``say`` writes to the terminal; ``offset`` and
    ``error_lines`` read the log file back."""

    def __init__(self, log_file: Path, terminal: TextIO, echo: ProgressEcho) -> None:
        self.log_file = log_file
        self.terminal = terminal
        self.echo = echo

    def say(self, text: str = "") -> None:
        self.echo.flush_pending()
        self.terminal.write(text + "\n")
        self.terminal.flush()

    def offset(self) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def error_lines(self, since: int = 0, limit: int = 12) -> list[str]:
        """The last error of the log written after byte ``since``: see :func:`last_error`."""
        sys.stdout.flush()
        sys.stderr.flush()
        with self.log_file.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        return last_error(text, limit)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL = re.compile(r"^\S+ \[(?P<level>[a-z]+)\s*\]")


def last_error(text: str, limit: int = 12) -> list[str]:
    """The last error-level entry of a structlog console log, condensed: its first line,
    then for each exception of its traceback the innermost frame and the exception's own
    lines; at most ``limit`` lines, the end kept."""
    lines = [_ANSI.sub("", line.rstrip()) for line in text.splitlines()]
    start = None
    for i, line in enumerate(lines):
        m = _LEVEL.match(line)
        if m and m.group("level") in ("error", "critical", "exception"):
            start = i
    if start is None:
        return []
    out = [" ".join(lines[start].split())]
    frame = None
    for line in lines[start + 1 :]:
        if _LEVEL.match(line):
            break
        if line.startswith("  File "):
            frame = line
        elif not line.strip() or line.startswith(" ") or line.startswith(_CHAIN):
            continue
        else:
            if frame is not None:
                out.append(frame)
                frame = None
            out.append(line)
    return out if len(out) <= limit else [out[0], "  ...", *out[-(limit - 2) :]]


_CHAIN = (
    "Traceback (most recent call last)",
    "The above exception was the direct cause",
    "During handling of the above exception",
)


@contextmanager
def quiet(log_file: Path, every: float = 10.0) -> Iterator[QuietRun]:
    """Send this process's stdout and stderr to ``log_file`` (appended) while the block
    runs; cutover's progress lines still reach the terminal (see :class:`ProgressEcho`)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8")
    progress_stream = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8")
    echo = ProgressEcho(progress_stream, every=every)
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.addHandler(echo)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with os.fdopen(os.dup(fd), "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} ---\n")
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield QuietRun(log_file, terminal, echo)
    finally:
        echo.flush_pending()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for f in (fd, saved_out, saved_err):
            os.close(f)
        logger.removeHandler(echo)
        terminal.close()
        progress_stream.close()
