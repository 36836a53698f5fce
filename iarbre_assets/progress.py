"""Progress of a run, from its first second: the stage, and the work done out of the total.

Writers (the assets, in the run's process) append JSON lines to `<home>/progress/<run_id>.jsonl`:

    {"at": 12.3, "stage": "constraints", "done": 120, "total": 2124, "unit": "factor × commune"}

Readers (`iarbre run`, `iarbre refresh`, the benchmarks) follow the file and show a progress bar in a
terminal (rich), plain lines in a log. No Dagster here: the file is the contract.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class ProgressLog:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def emit(self, stage: str, done: int = 0, total: int | None = None, unit: str = "communes", note: str = "") -> None:
        if self.path is None:
            return
        line = json.dumps({"at": time.time(), "stage": stage, "done": done, "total": total, "unit": unit,
                           "note": note})
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    @contextmanager
    def stage(self, name: str, total: int, unit: str = "communes"):
        """A stage of `total` units; the yielded callable records one more unit done (or `n`)."""
        done = [0]

        def advance(n: int = 1, *_):
            done[0] += n
            self.emit(name, done[0], total, unit)

        self.emit(name, 0, total, unit)
        yield advance
        if done[0] != total:
            self.emit(name, total, total, unit)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    if not path.exists():
        return [], offset
    with path.open("r", encoding="utf-8") as handle:
        handle.seek(offset)
        chunk = handle.read()
    complete = chunk[: chunk.rfind("\n") + 1]
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return events, offset + len(complete.encode("utf-8"))


class ProgressView:
    """Shows progress events: a rich bar on a terminal, one plain line per stage change (and every 10 %) else."""

    def __init__(self, stream=None, interactive: bool | None = None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.started = time.monotonic()
        self._last: tuple | None = None
        self._rich = None

    def __enter__(self):
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), transient=False)
            self._rich.__enter__()
            self._tasks: dict[str, int] = {}
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def show(self, event: dict) -> None:
        stage, done, total, unit = event["stage"], event.get("done", 0), event.get("total"), event.get("unit", "")
        if self._rich is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._rich.add_task(stage, total=total, unit=unit)
            self._rich.update(self._tasks[stage], completed=done, total=total)
            return
        decile = None if not total else int(10 * done / total)
        key = (stage, decile)
        if key == self._last:
            return
        self._last = key
        elapsed = time.monotonic() - self.started
        count = f" {done}/{total} {unit}" if total else ""
        note = f" ({event['note']})" if event.get("note") else ""
        print(f"[{elapsed:6.1f} s] {stage}{count}{note}", file=self.stream, flush=True)


@contextmanager
def following(path: Path, view: ProgressView, interval: float = 0.25):
    """Show the events appended to `path` while the body runs (in a background thread)."""
    stop = threading.Event()

    def follow():
        offset = 0
        while True:
            events, offset = read_events(path, offset)
            for event in events:
                view.show(event)
            if stop.is_set():
                return
            stop.wait(interval)

    thread = threading.Thread(target=follow, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
