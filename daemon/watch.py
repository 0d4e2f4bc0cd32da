"""`echemd watch`: a live terminal view of a daemon (rich): instruments, runs, latest readings, events.

It polls the control socket for instruments and run states and subscribes to the data stream for
the latest samples and the events ("short", "limit", ...), redrawing in place about four times a
second.  When its output is not a terminal (a pipe, a log file) it writes one line per event and
per run status change instead, flushed as each arrives.  Works over CURVE with the same keys as
the other client verbs.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import TextIO

import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from echemd.daemon.client import Client, Subscription
from echemd.daemon.stream import DataBlock

REFRESH_S = 0.25
EVENTS_SHOWN = 8


class Watcher:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.latest: dict[str, dict[str, float]] = {}  # run_id -> last sample
        self.events: collections.deque[str] = collections.deque(maxlen=EVENTS_SHOWN)
        self._subscription = Subscription(zmq.Context.instance(), client.publish_endpoint, b"run.", client.keys)

    def close(self) -> None:
        self._subscription.close()

    def drain(self, budget_s: float) -> None:
        """Take what the stream has for up to ``budget_s``."""
        deadline = time.monotonic() + budget_s
        while (left := deadline - time.monotonic()) > 0:
            message = self._subscription.receive(left)
            if message is None:
                return
            if isinstance(message, DataBlock):
                self.latest[message.run_id] = {name: float(values[-1]) for name, values in message.columns.items()}
            elif message.kind == "event":
                header = message.header
                if header["kind"] != "step":
                    self.events.append(f"{time.strftime('%H:%M:%S')} {header['run_id']} {header['kind']}: {header['message']}")

    def render(self) -> Group:
        table = Table(title=f"echemd at {self.client.endpoint}", expand=True)
        instruments = self.client.instruments()
        widest = max((len(instrument["name"]) for instrument in instruments), default=10)
        table.add_column("instrument", no_wrap=True, min_width=widest)  # names stay whole; the other columns fold
        for column in ("kind", "state", "run", "step", "samples", "latest"):
            table.add_column(column, overflow="fold")
        for instrument in instruments:
            run_id = instrument["current_run"]
            run, step, samples, latest = "", "", "", ""
            if run_id:
                record = self.client.status(run_id)
                run = f"{record['protocol']} {record['status']}"
                step = record["step"] + (f"  {_bar(record['progress'])}" if record["progress"] is not None else "")
                samples = str(record["n_samples"])
                latest = _latest(self.latest.get(run_id, {}))
            queued = f" (+{len(instrument['queued'])} queued)" if instrument["queued"] else ""
            state_style = {"running": "green", "idle": "dim", "offline": "red"}.get(instrument["state"], "")
            table.add_row(instrument["name"], instrument["kind"], Text(instrument["state"] + queued, style=state_style), run, step, samples, latest)
        events = Text("\n".join(self.events) or "no events yet", style="yellow")
        return Group(table, Text("events", style="bold"), events)


def _bar(fraction: float, width: int = 12) -> str:
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled) + f" {fraction:4.0%}"


def _latest(sample: dict[str, float]) -> str:
    parts = []
    if "voltage_V" in sample:
        parts.append(f"{sample['voltage_V'] * 1e3:.2f} mV")
    if "bias_V" in sample:
        parts.append(f"{sample['bias_V']:.3f} V")
    if "current_A" in sample:
        parts.append(f"{sample['current_A'] * 1e6:.3f} uA")
    if "frequency_Hz" in sample:
        parts.append(f"{sample['frequency_Hz']:.4g} Hz")
    return ", ".join(parts)


def follow(client: Client, out: TextIO) -> None:
    """Write one line per event and per run status change to ``out`` until interrupted:
    ``HH:MM:SS RUN_ID KIND: MESSAGE`` (``status: running``, ``short: ...``), after a first line
    saying it is connected (from then on nothing published is missed)."""
    subscription = Subscription(zmq.Context.instance(), client.publish_endpoint, b"run.", client.keys)
    try:
        subscription.wait_connected(10.0)
        out.write(f"{time.strftime('%H:%M:%S')} watching {client.publish_endpoint}\n")
        out.flush()
        while True:
            message = subscription.receive(1.0)
            if message is None or isinstance(message, DataBlock):
                continue
            header = message.header
            if message.kind == "event":
                text = f"{header['kind']}: {header['message']}"
            elif message.kind == "status":
                text = f"status: {header['status']}" + (f" ({header['error']})" if header.get("error") else "")
            else:
                continue
            out.write(f"{time.strftime('%H:%M:%S')} {header['run_id']} {text}\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        subscription.close()


def watch(client: Client, once: bool = False, console: Console | None = None) -> None:
    """Show the live view until interrupted (Ctrl-C); ``once``: print one frame and return.  Not on a
    terminal (and not ``once``): one line per event instead (see :func:`follow`)."""
    if not once and console is None and not sys.stdout.isatty():
        follow(client, sys.stdout)
        return
    watcher = Watcher(client)
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    try:
        if once:
            watcher.drain(1.2)
            console.print(watcher.render())
            return
        with Live(watcher.render(), console=console, refresh_per_second=4, transient=False) as live:
            while True:
                watcher.drain(REFRESH_S)
                live.update(watcher.render())
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
