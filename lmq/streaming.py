"""Streaming a run's events from a worker thread (:meth:`lmq.api.Query.stream`)."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

Listener = Callable[[dict[str, Any]], None]


class _StreamClosed(BaseException):
    """Raised from the event listener to stop a run whose stream was closed (a
    BaseException so that no handler on the way mistakes it for a program error)."""


@dataclasses.dataclass
class _Failure:
    error: BaseException


_DONE = object()


def stream_events(run: Callable[[Listener], Any]) -> Iterator[dict[str, Any]]:
    """Run ``run(listen)`` on a worker thread and yield the events it passes to ``listen``
    as they happen (less the per-instance ``done`` and ``failed`` ones), then ``{"event":
    "result", "result": <what run returned>}``. An error of the run is raised here;
    closing the generator early stops the run at its next event."""
    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def listen(event: dict[str, Any]) -> None:
        if stop.is_set():
            raise _StreamClosed
        if event["event"] not in ("done", "failed"):  # the result event says it
            events.put(event)

    def work() -> None:
        try:
            events.put({"event": "result", "result": run(listen)})
        except _StreamClosed:
            pass
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread
            events.put(_Failure(error))
        finally:
            events.put(_DONE)

    worker = threading.Thread(target=work, name="lmq-stream", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
