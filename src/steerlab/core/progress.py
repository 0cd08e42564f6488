"""Progress bars that suit where the output goes: a tqdm bar on a terminal, plain lines elsewhere.

A tqdm bar redraws itself with '\\r' many times a second; in a log file, a CI log or a pipe that is
thousands of partial lines. When the stream is not a terminal, `progress_bar(...)` returns a `PlainProgress`
instead: one complete line every `interval` seconds (and one at the end) with the count, the rate and
the latest postfix. Both take tqdm's arguments and methods as used here (update, set_postfix, close,
iteration, `with`).
"""

from __future__ import annotations

import sys
import time

PLAIN_INTERVAL_S = 30.0  # seconds between plain progress lines


class PlainProgress:
    """tqdm's interface, printed as plain periodic lines: 'desc: 120/500 ep (24%), 3.1 ep/s, success=0.40'."""

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it", initial: int = 0,
                 file=None, interval: float = PLAIN_INTERVAL_S, clock=time.monotonic, **_ignored):
        self.iterable, self.desc, self.unit, self.n = iterable, desc, unit, int(initial)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.file, self.interval, self.clock = total, file or sys.stderr, float(interval), clock
        self.postfix = ""
        self.start = self.last = clock()
        self.start_n = self.n
        self.emitted_n: int | None = None
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.start_n) / elapsed
        post = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{count} {self.unit}{share}, {rate:.3g} {self.unit}/s{post}"

    def _emit(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.last, self.emitted_n = self.clock(), self.n

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self.clock() - self.last >= self.interval:
            self._emit()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.emitted_n != self.n:  # the final count, unless the last line already said it
                self._emit()


class _Silent(PlainProgress):
    def _emit(self) -> None:
        pass

    def write(self, text: str) -> None:
        pass


def progress_bar(iterable=None, *, disable: bool = False, file=None, **kwargs):
    """A progress bar over `iterable` (or `total=`): tqdm on a terminal, `PlainProgress` lines otherwise,
    nothing when `disable`. The one helper every loop uses."""
    stream = file or sys.stderr
    if disable:
        return _Silent(iterable, file=stream, **kwargs)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    return PlainProgress(iterable, file=stream, **kwargs)
