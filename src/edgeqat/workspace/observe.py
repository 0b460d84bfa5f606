"""Who watches a step while it works: the training loop reports each finished epoch here, and
whoever runs the step (the stage runner) may listen, to log it live, without the step knowing.

    with observing(listener):          # the adapter, around the step call
        step(...)                      # ... models.training.fit -> epoch_end("qat", 3, logs)

A listener is any callable ``(fine_tune, epoch, logs)``; ``fine_tune`` is the name the step gave
the training run ("train", "pqat", "channel-prune qat"), ``epoch`` counts from 1 and ``logs`` holds
the epoch's numbers (loss, accuracy, val_loss, val_accuracy, ...). A listener that raises is
dropped with one line on stderr: watching never breaks the work. Standard library only.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Mapping

Listener = Callable[[str, int, Mapping[str, float]], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


@contextlib.contextmanager
def observing(listener: Listener) -> Iterator[None]:
    """``listener`` hears every epoch that ends meanwhile (in this process)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)


def epoch_end(fine_tune: str, epoch: int, logs: Mapping[str, float]) -> None:
    """Called by the training loop after each epoch (1-based)."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(fine_tune, epoch, dict(logs))
        except Exception as err:  # noqa: BLE001 - a watcher's failure must never fail training
            from edgeqat.io import log

            log(f"live logging of {fine_tune} epoch {epoch} stopped: {type(err).__name__}: {err}")
            with _lock:
                if listener in _listeners:
                    _listeners.remove(listener)
