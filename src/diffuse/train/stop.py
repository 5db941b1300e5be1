"""Ctrl-C / SIGTERM during training: finish the step, save, exit cleanly; a second Ctrl-C aborts at once."""

from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """Context manager: ``.requested`` turns True on the first SIGINT/SIGTERM (handlers only in the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _on_signal(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
