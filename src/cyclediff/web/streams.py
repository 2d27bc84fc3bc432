"""Work in a background thread, seen as a stream of events: how the studio runs a request and how a stopped
request ends (:mod:`cyclediff.web.service`)."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CycleDiffError


class Stopped(BaseException):
    """Raised at the next step of stopped work: through the runner (which records an Exception as the item's
    failure and goes on with the next), out of the work thread."""


def stream(work: Callable[[Callable[[str, Any], None], threading.Event], Any],
           tick: float | None = None) -> Iterator[tuple[str, Any]]:
    """Run ``work(emit, stop)`` in a thread and yield its events ``(kind, value)`` as they come, then ``("done",
    its return value)``. Its exception is raised here; closing the iterator (a cancelled request) sets ``stop``.
    With ``tick`` (seconds) a ``("tick", None)`` comes whenever nothing else did for that long: a server can close
    a generator only between two of its items, so a cancelled request stops within a tick, not at the next
    result."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def target() -> None:
        try:
            events.put(("done", work(lambda kind, value: events.put((kind, value)), stop)))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            events.put(("error", err))

    context = contextvars.copy_context()  # the request's context: the page's progress bar follows tqdm there too
    threading.Thread(target=context.run, args=(target,), daemon=True, name="cyclediff-web-work").start()
    try:
        while True:
            try:
                kind, value = events.get(timeout=tick)
            except queue.Empty:
                kind, value = "tick", None
            if kind == "error":
                raise value
            yield kind, value
            if kind == "done":
                return
    finally:
        stop.set()


def first_then(event: tuple[str, Any], events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """``event``, then ``events`` (closing this closes them: a stopped request stops their work)."""
    yield event
    yield from events


def only_file(events: Iterator[tuple[str, Any]]) -> Path:
    """The one output file of a one-unit run, or its failure as an error."""
    result = [value for kind, value in events if kind == "done"][0][0]
    if result.status == "failed":
        raise CycleDiffError(result.error or "failed")
    return Path(result.output)
