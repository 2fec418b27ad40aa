"""Progress bars for long steps: a tqdm bar on a terminal, periodic log lines otherwise (CI, files)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

log = logging.getLogger("certssb.reporting.progress")


class _LogBar:
    """Logs ``desc: n/total`` at most every ``interval`` seconds while unfinished, and one final line."""

    def __init__(self, total: int, desc: str, interval: float = 30.0) -> None:
        self.total, self.desc, self.interval, self.n = total, desc, interval, 0
        self._t0 = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval and self.n < self.total:  # the last step: close() says it
            self._last = now
            log.info("%s: %d/%d (%.0f s)", self.desc, self.n, self.total, now - self._t0)

    def close(self) -> None:
        log.info("%s: %d/%d done in %.1f s", self.desc, self.n, self.total, time.monotonic() - self._t0)


@contextmanager
def progress_bar(total: int, desc: str) -> Iterator[tqdm | _LogBar]:
    """A bar with ``update(n)``: tqdm when stderr is a terminal, log lines otherwise."""
    bar: tqdm | _LogBar = (
        tqdm(total=total, desc=desc, leave=False) if sys.stderr.isatty() else _LogBar(total, desc)
    )
    try:
        yield bar
    finally:
        bar.close()
