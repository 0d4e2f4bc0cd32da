"""The `echemd` command.  Exit codes: 0 success, 2 bad usage or input (message on stderr), 1 run failed."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import zmq

from echemd.config import parameter_sets
from echemd.daemon.client import DEFAULT_CONTROL_ENDPOINT, Client, RemoteError
from echemd.daemon.errors import EchemdError
from echemd.daemon.vocabulary import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Ctrl-C (what a shell reports for SIGINT); a run being waited for goes on in the daemon.
EXIT_INTERRUPTED = 130
#: A daemon that does not answer a ping within this long is not there, s.
CONNECT_TIMEOUT_S = 2.0
#: What the verbs that run the daemon or read run files import beyond the client's packages, by
#: import name: the ``daemon`` extra of pyproject.toml (``pip install "echemd[daemon]"``).
DAEMON_MODULES = ("h5py", "pydantic", "pyvisa", "pymeasure", "impedance", "pandas", "matplotlib", "scipy", "filelock", "event_model")
#: The verbs that need them; the others are a client's and need only ``pip install echemd``.
DAEMON_VERBS = frozenset({"serve", "demo", "analyze", "plot", "export"})


class UsageError(EchemdError):
    """Bad usage or input: reported on stderr with exit code 2."""


def sim_speed(text: str) -> float | str:
    if text == "max":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive speed factor or 'max', got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parameter(text: str) -> tuple[str, Any]:
    """KEY=VALUE; VALUE is read as JSON (numbers, true/false, null, lists) or else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echemd", description="Electrochemical instrument control and data acquisition daemon.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"echemd {_installed_version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    serve = verbs.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", type=Path, help="configuration file (default: the embedded simulated lab)")
    serve.add_argument("--control", metavar="URL", help="control endpoint (overrides the config)")
    serve.add_argument("--publish", metavar="URL", help="data stream endpoint (overrides the config)")
    serve.add_argument("--data-dir", type=Path, metavar="DIR", help="folder of the run files (overrides the config)")
    serve.add_argument("--sim-speed", type=sim_speed, metavar="FACTOR|max", help="clock of every simulated instrument (1 = real time)")
    serve.add_argument("--cancel-queued", action="store_true",
                       help="end the runs a previous daemon left queued as aborted, instead of queueing them again")

    demo = verbs.add_parser("demo", help="run the simulated lab through the real control API and print the results")
    demo.add_argument("--data-dir", type=Path, default=Path("echemd-demo"), metavar="DIR", help="where the run files go (default: ./echemd-demo)")

    run = verbs.add_parser("run", help="submit a run")
    run.add_argument("protocol", nargs="?", help="the protocol (or from --params or --like)")
    run.add_argument("--instrument", metavar="NAME", help="the instrument (or that of the --like run)")
    run.add_argument("--params", dest="parameter_set", metavar="FILE|NAME",
                     help="parameters from a TOML or JSON file, or a shipped set (" + ", ".join(parameter_sets.shipped()) + "); -p overrides")
    run.add_argument("--like", metavar="RUN_ID", help="the protocol, instrument and parameters of an earlier run; --params and -p override")
    run.add_argument("-p", "--param", dest="params", type=parameter, action="append", default=[], metavar="KEY=VALUE",
                     help="a protocol parameter (value read as JSON, else a string); repeat for each")
    run.add_argument("-m", "--meta", dest="meta", type=parameter, action="append", default=[], metavar="KEY=VALUE",
                     help="run metadata: sample, operator, notes, cell, electrolyte, thickness_um, area_cm2, stack_pressure_MPa, "
                          "temperature_C, pretreatment, or a key of the lab's own; repeat for each")
    run.add_argument("--wait", action="store_true", help="wait for the run to end")
    run.add_argument("--allow-large", action="store_true", help="run it even if projected beyond the daemon's max_run_size_gb")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    status = verbs.add_parser("status", help="daemon status, or one run's (readable; --json for the record)")
    status.add_argument("run_id", nargs="?")
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    queue = verbs.add_parser("queue", help="an instrument's queue: list it, remove a queued run, or move one")
    queue.add_argument("instrument", metavar="INSTRUMENT")
    moves = queue.add_mutually_exclusive_group()
    moves.add_argument("--remove", metavar="RUN_ID", help="take this queued run off the queue (it ends aborted)")
    moves.add_argument("--move", metavar="RUN_ID", help="move this queued run to position --to (0: next)")
    queue.add_argument("--to", type=int, default=0, metavar="N", help="with --move: its new position (default 0, next)")
    queue.add_argument("--json", action="store_true", help="print the queue as one JSON object")
    runs = verbs.add_parser("runs", help="every run the daemon knows, oldest first (a table; --json for the records)")
    runs.add_argument("--sample", help="only runs whose metadata names this sample")
    runs.add_argument("--protocol", help="only runs of this protocol")
    runs.add_argument("--instrument", metavar="NAME", help="only runs on this instrument")
    runs.add_argument("--status", help="only runs in this status (completed, failed, ...)")
    runs.add_argument("--since", type=since_time, metavar="DATE", help="only runs started (or submitted) since, e.g. 2026-11-01 or 2026-11-01T14:00")
    runs.add_argument("--json", action="store_true", help="print the matching run records as one JSON list")
    watch = verbs.add_parser("watch", help="live view of a daemon: instruments, runs, latest readings, events (not on a terminal: "
                                            "a line saying it is connected, then one line per event and run status)")
    watch.add_argument("--once", action="store_true", help="print one frame and exit")
    analyze = verbs.add_parser("analyze", help="analyse a recorded file (echemd HDF5, Gamry DTA, EC-Lab .mpt or CSV); prints JSON")
    analyze.add_argument("kind", choices=("ccd", "eis", "cafm"))
    analyze.add_argument("file", type=Path)
    analyze.add_argument("--area-cm2", type=positive_float, help="electrode area, cm2 (default: from the file where it says)")
    analyze.add_argument("--thickness-mm", type=positive_float, help="eis: electrolyte thickness, mm (tells bulk from grain-boundary arcs)")
    analyze.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=True,
                         help="eis: both electrodes alike, so an electrode arc holds two interfaces (default: yes)")
    analyze.add_argument("--circuit", default=None, help="eis: equivalent circuit in impedance.py syntax (default R0-p(R1,CPE1)-p(R2,CPE2))")
    analyze.add_argument("--spectrum", type=int, metavar="N",
                         help="eis: which spectrum (from 1) of a file holding several (a CCD with spectra between its half cycles)")
    analyze.add_argument("--plating-sign", choices=("negative", "positive"),
                         help="ccd: the current sign that plates Li on the working electrode (default: found from the data)")
    _add_detection_options(analyze)
    _add_column_option(analyze)
    for verb, (_, arguments, help_text) in REQUEST_VERBS.items():
        request = verbs.add_parser(verb, help=help_text)
        for argument in arguments:
            request.add_argument(argument, **({"nargs": "?"} if argument == "name" else {}))
    plot = verbs.add_parser("plot", help="plot a run file, or a Gamry DTA, EC-Lab .mpt or CSV file (analysed as analyze does) (PNG)")
    plot.add_argument("file", type=Path)
    plot.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.png")
    plot.add_argument("--kind", choices=("ccd", "eis", "cafm"), help="for a file from other software: what it holds (default: "
                                                                        "the first whose columns it has: eis, cafm, ccd)")
    plot.add_argument("--area-cm2", type=float, help="electrode area where the file does not say, cm2")
    plot.add_argument("--spectrum", type=int, help="which impedance spectrum of a file holding several (from 1)")
    _add_column_option(plot)
    export = verbs.add_parser("export", help="export a run file as CSV, Gamry DTA, bluesky documents (JSON lines) or a Battery Data Format table")
    export.add_argument("file", type=Path)
    export.add_argument("--format", choices=("csv", "dta", "bluesky", "bdf"), required=True)
    export.add_argument("-o", "--output", type=Path, metavar="OUT", help="default: beside the run file")
    keys = verbs.add_parser("keys", help="make a CURVE key pair: NAME.key (public) and NAME.key_secret (0600)")
    keys.add_argument("name")
    keys.add_argument("--dir", type=Path, default=Path("."), help="where to write them (default: here)")
    keys.add_argument("--force", action="store_true", help="replace an existing key pair of that name")
    for client_verb in (run, status, queue, verbs.choices["runs"], watch, *(verbs.choices[verb] for verb in REQUEST_VERBS)):
        client_verb.add_argument("--endpoint", default=DEFAULT_CONTROL_ENDPOINT, metavar="URL", help="control endpoint of the daemon")
        client_verb.add_argument("--server-key", type=Path, metavar="FILE", help="the daemon's public key (CURVE)")
        client_verb.add_argument("--client-key", type=Path, metavar="FILE", help="this client's secret key file (CURVE)")
        client_verb.add_argument("--timeout", type=float, default=10.0, metavar="S",
                                 help="seconds to wait for each reply (default 10; a daemon that does not answer at all fails within 2 s)")
    return parser


def missing_daemon_modules() -> list[str]:
    """The packages of the ``daemon`` extra this Python cannot import (import names)."""
    missing = []
    for name in DAEMON_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # (a package whose import machinery fails is as good as missing)
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # (a daemon verb's options are unknown where its packages are missing)
    if args.verb in DAEMON_VERBS and (missing := missing_daemon_modules()):
        print(f"echemd {args.verb} needs the daemon's packages, missing here ({', '.join(missing)}): "
              f"pip install \"echemd[daemon]\"", file=sys.stderr)
        return EXIT_USAGE
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = VERBS[args.verb](args)
        sys.stdout.flush()  # (a closed pipe shows here, not at interpreter exit)
        return code
    except BrokenPipeError:  # `echemd runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error when Python flushes stdout at exit)
        return EXIT_OK
    except KeyboardInterrupt:
        print("echemd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except zmq.ZMQError as exc:  # a malformed --endpoint URL, an unknown transport
        print(f"echemd: bad endpoint {getattr(args, 'endpoint', '')!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"echemd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RemoteError as exc:
        print(f"echemd: {exc}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2), file=sys.stderr)
        return EXIT_USAGE if exc.code not in ("internal", "shutting_down") else EXIT_FAILED
    except TimeoutError as exc:
        print(f"echemd: {exc} (is `echemd serve` running there?)", file=sys.stderr)
        return EXIT_FAILED


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Client]:
    """A client of the daemon at --endpoint that has answered a ping within CONNECT_TIMEOUT_S (so a
    missing daemon fails at once, whatever --timeout says), then waits up to --timeout per reply."""
    with Client(args.endpoint, timeout_s=min(args.timeout, CONNECT_TIMEOUT_S), keys=_keys(args)) as client:
        client.ping()
        client.timeout_s = args.timeout
        yield client


def cmd_serve(args: argparse.Namespace) -> int:
    from echemd.config import ConfigError, load_config
    from echemd.daemon.folder_lock import FolderInUse
    from echemd.daemon.service import Daemon
    from echemd.drivers.base import DriverUnavailable

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    overrides = {"control_endpoint": args.control, "publish_endpoint": args.publish, "data_dir": args.data_dir}
    config = config.model_validate({**config.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        daemon = Daemon(config, sim_speed=args.sim_speed, cancel_queued=args.cancel_queued)
    except zmq.ZMQError as exc:
        raise UsageError(f"cannot bind the control or data endpoint: {exc}") from exc
    except DriverUnavailable as exc:
        raise UsageError(f"{args.config or 'the configuration'}: {exc}") from exc
    except FolderInUse as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # a data folder that is a file, cannot be made, or cannot be written
        raise UsageError(f"data folder {config.data_dir}: {exc}") from exc
    logging.getLogger("echemd").info("serving; SIGINT or SIGTERM stops every run safely and exits")
    while not stop.wait(0.2) and not daemon.shutdown_requested.is_set():
        pass
    daemon.close()
    return EXIT_OK


def _once_each(pairs: list[tuple[str, Any]], option: str) -> dict[str, Any]:
    """KEY=VALUE pairs as a dict; a key given twice is a usage error (which one was meant?)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise UsageError(f"{option} {key} given twice ({found[key]!r} and {value!r}): give it once")
        found[key] = value
    return found


def _run_request(args: argparse.Namespace, client: Client) -> tuple[str, str, dict[str, Any]]:
    """Protocol, instrument and parameters of ``run``: an earlier run's (--like), then a parameter
    set's (--params), then -p; a protocol named twice must be the same."""
    protocols: dict[str, str] = {}
    instrument, parameters = args.instrument, {}
    if args.like:
        earlier = client.status(args.like)
        protocols["--like " + args.like] = earlier["protocol"]
        instrument = instrument or earlier["instrument"]
        parameters.update({key: value for key, value in earlier["parameters"].items() if value is not None})
    if args.parameter_set:
        try:
            named, values = parameter_sets.load(args.parameter_set)
        except parameter_sets.ParameterSetError as exc:
            raise UsageError(str(exc)) from None
        if named:
            protocols["--params " + args.parameter_set] = named
        parameters.update(values)
    parameters.update(_once_each(args.params, "-p"))
    if args.protocol:
        protocols["the command line"] = args.protocol
    if len(set(protocols.values())) > 1:
        raise UsageError("the protocol differs: " + ", ".join(f"{name} from {where}" for where, name in protocols.items()))
    if not protocols:
        raise UsageError("name the protocol (echemd run ccd ...), or give --params with one or --like RUN_ID")
    if not instrument:
        raise UsageError("name the instrument with --instrument NAME (or --like RUN_ID)")
    return next(iter(protocols.values())), instrument, parameters


def cmd_run(args: argparse.Namespace) -> int:
    metadata = _once_each(args.meta, "--meta")
    with _client(args) as client:
        protocol, instrument, parameters = _run_request(args, client)
        run_id = client.submit(protocol, instrument, metadata=metadata or None, allow_large=args.allow_large, **parameters)
        if not args.wait:
            print(json.dumps({"run_id": run_id}) if args.json else run_id)
            return EXIT_OK
        try:
            record = _wait_with_progress(client, run_id)
        except KeyboardInterrupt:
            print(f"echemd: stopped waiting; run {run_id} goes on in the daemon (echemd status {run_id}; echemd abort {run_id})",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    final = {key: record[key] for key in ("run_id", "status", "file", "result")}
    if record["error"]:
        final["error"] = record["error"]
    print(json.dumps(final) if args.json else _readable_run(record))
    return EXIT_OK if record["status"] == RunStatus.COMPLETED else EXIT_FAILED


def _readable_run(record: dict[str, Any]) -> str:
    """A run record as a few lines a person reads (``--json`` gives the record itself)."""
    lines = [f"{record['run_id']}  {record['status']}  {record.get('protocol', '')} on {record.get('instrument', '')}"]
    details = []
    if (record.get("metadata") or {}).get("sample"):
        details.append(f"sample {record['metadata']['sample']}")
    if record.get("step") and record["status"] not in FINAL_STATUSES:
        details.append(f"step: {record['step']}")
    if record.get("progress") is not None and record["status"] not in FINAL_STATUSES:
        details.append(f"progress {record['progress']:.0%}")
    details.append(f"{record.get('n_samples', 0):,} samples")
    lines.append("  " + ", ".join(details))
    if record.get("result"):
        lines.append(f"  result: {record.get('summary') or '(see --json)'}")  # (the protocol's summary line, from the daemon)
    if record.get("error"):
        lines.append(f"  error: {record['error']}")
    lines.append(f"  file: {record.get('file', '')}")
    return "\n".join(lines)


def _wait_with_progress(client: Client, run_id: str) -> dict[str, Any]:
    """Wait for the run, drawing the protocol's progress on stderr (stdout stays for the result)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as progress:
        task = progress.add_task(run_id, total=1.0)
        while True:
            record = client.status(run_id)
            progress.update(task, completed=record["progress"] or 0.0, description=f"{record['protocol']} {record['status']}: {record['step']}")
            if record["status"] not in ACTIVE_STATUSES:
                return record
            time.sleep(0.2)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status(args.run_id)
    if args.json:
        print(json.dumps(status))
    elif args.run_id is not None:
        print(_readable_run(status))
    else:
        print(f"echemd {status['version']}: {len(status['instruments'])} instruments, {len(status['active_runs'])} active runs")
        for name, instrument in status["instruments"].items():
            print(f"  {name:<16} {instrument['state']:<8} {instrument['current_run'] or ''}")
        for record in status["active_runs"]:
            print(_readable_run(record))
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"instrument": args.instrument}
    if args.remove:
        request.update(action="remove", run_id=args.remove)
    elif args.move:
        request.update(action="move", run_id=args.move, position=args.to)
    with _client(args) as client:
        queue = client.call("queue", **request)
    if args.json:
        print(json.dumps(queue))
        return EXIT_OK
    print(f"{queue['instrument']}: running {queue['current_run'] or 'nothing'}; {len(queue['queued'])} queued")
    for position, run_id in enumerate(queue["queued"]):
        print(f"  {position}  {run_id}")
    return EXIT_OK


def since_time(text: str) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2026-11-01 or 2026-11-01T14:00, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


#: Result keys that say what a run found, by the protocols that report them (the first present is shown).
def _matches(record: dict[str, Any], args: argparse.Namespace) -> bool:
    metadata = record.get("metadata") or {}
    if args.sample is not None and metadata.get("sample") != args.sample:
        return False
    if any(wanted is not None and record.get(key) != wanted for key, wanted in
           (("protocol", args.protocol), ("instrument", args.instrument), ("status", args.status))):
        return False
    if args.since is not None:
        when = record.get("started") or record.get("submitted") or ""
        return bool(when) and datetime.fromisoformat(when) >= args.since
    return True


def _headlines(client: Client) -> dict[str, str]:
    """Each protocol's most telling result key, as the daemon describes its protocols."""
    return {protocol["name"]: protocol.get("headline", "") for protocol in client.protocols()}


def _headline(record: dict[str, Any], headlines: dict[str, str]) -> str:
    """The result key the run's protocol declares most telling (``headlines``), and its value; or the run's error."""
    result = record.get("result") or {}
    key = headlines.get(record.get("protocol", ""), "")
    if key not in result:
        return record.get("error", "")[:40]
    shown = _short_value(result[key])
    return f"{key}={shown}" + (f" ({result['stopped_by']})" if result.get("stopped_by") else "")


def _short_value(value: Any) -> str:
    """A result value in a table cell: a number, or a list's first three numbers."""
    if value is None:
        return "none"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) or v is None for v in value):
        return ",".join(_short_value(v) for v in value[:3]) + (f",... ({len(value)})" if len(value) > 3 else "")
    return "..."


def cmd_runs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        records = [record for record in client.runs() if _matches(record, args)]
        headlines = _headlines(client) if not args.json else {}
    if args.json:
        print(json.dumps(records))
        return EXIT_OK
    rows = [("RUN", "STATUS", "PROTOCOL", "INSTRUMENT", "SAMPLE", "STARTED (UTC)", "SAMPLES", "RESULT")]
    for record in records:
        started = (record.get("started") or "")[:16].replace("T", " ")
        rows.append((record["run_id"], record["status"], record.get("protocol", ""), record.get("instrument", ""),
                     str((record.get("metadata") or {}).get("sample", "")), started, str(record.get("n_samples", 0)), _headline(record, headlines)))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) if k != 6 else cell.rjust(width) for k, (cell, width) in enumerate(zip(row, widths))) + "  " + row[-1])
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from echemd.daemon.watch import watch

    with _client(args) as client:  # (it has answered a ping: a missing daemon fails clearly, exit 1)
        watch(client, once=args.once)
    return EXIT_OK


#: Verbs that make one control request and print its result as JSON: verb -> (method, arguments, help).
REQUEST_VERBS = {
    "abort": ("abort", ("run_id",), "abort a run (a queued one at once, a running one within 0.1 s or after a 2400 sweep list, instrument safe)"),
    "pause": ("pause", ("run_id",), "pause a running run: the instrument holds as the protocol declares"),
    "resume": ("resume", ("run_id",), "resume a paused run: the interrupted step goes on for what was left of it"),
    "shutdown": ("shutdown", (), "stop the daemon as on SIGTERM: running runs end aborted with the instrument safe, queued runs stay queued"),
    "instruments": ("instruments", (), "the daemon's instruments: kind, capabilities, limits, state, queue"),
    "protocols": ("protocols", ("name",), "the protocols and their parameters (units, ranges, descriptions); or one by NAME"),
}


def cmd_request(args: argparse.Namespace) -> int:
    method, arguments, _ = REQUEST_VERBS[args.verb]
    params = {argument: getattr(args, argument) for argument in arguments if argument != "name"}
    with _client(args) as client:
        result = client.call(method, **params)
    if args.verb == "protocols" and args.name is not None:
        chosen = [protocol for protocol in result if protocol["name"] == args.name]
        if not chosen:
            raise UsageError(f"no protocol {args.name!r}; the daemon has {', '.join(p['name'] for p in result)}")
        result = chosen[0]
    print(json.dumps(result))
    return EXIT_OK


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("echemd")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


def _keys(args: argparse.Namespace):
    if args.server_key is None and args.client_key is None:
        return None
    if args.server_key is None or args.client_key is None:
        raise UsageError("give both --server-key and --client-key")
    from echemd.daemon.security import ClientKeys

    try:
        return ClientKeys.load(args.server_key, args.client_key)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the keys: {exc}") from exc


def _run_file(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    import h5py

    if not h5py.is_hdf5(path):
        raise UsageError(f"{path}: not an echemd run file (HDF5)")
    return path


def _writable_output(path: Path | None) -> None:
    """Refuse an -o whose folder does not exist (or is not a folder) before any work is done."""
    if path is not None and not path.parent.is_dir():
        raise UsageError(f"-o {path}: the folder {path.parent} does not exist")


def cmd_plot(args: argparse.Namespace) -> int:
    import h5py

    from echemd.protocols.io.plots import plot_run, plot_table

    _writable_output(args.output)
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file")
    try:
        if h5py.is_hdf5(args.file):
            if args.column:
                raise UsageError(f"{args.file}: --column names a text table's columns; a run file's are known")
            print(plot_run(args.file, args.output))
        else:
            print(plot_table(args.file, args.output, args.kind, args.area_cm2, args.spectrum, _named_columns(args)))
    except (EchemdError, KeyError, ValueError) as exc:
        raise UsageError(f"{args.file}: cannot plot it: {exc}") from exc
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from echemd.protocols.io.export import export

    _writable_output(args.output)
    try:
        print(export(_run_file(args.file), args.format, args.output))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"{args.file}: cannot export it: {exc}") from exc
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from echemd.daemon.security import create_keys

    existing = [path for path in (args.dir / f"{args.name}.key", args.dir / f"{args.name}.key_secret") if path.exists()]
    if existing and not args.force:
        raise UsageError(f"{', '.join(map(str, existing))} exists: a new pair would lock out whoever holds it; give --force to replace it")
    if args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"--dir {args.dir}: not a folder")
    public, secret = create_keys(args.dir, args.name)
    print(json.dumps({"public": str(public), "secret": str(secret)}))
    return EXIT_OK


def _add_column_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--column", action="append", metavar="NAME=HEADER[@UNIT]",
                        help="a text table's column whose name echemd does not know, e.g. voltage_V='Spannung@mV' or "
                             "time_s='Zeit [min]' (NAME: time_s, voltage_V, current_A, bias_V, frequency_Hz, z_real_ohm, "
                             "z_imag_ohm, spectrum; HEADER as written in the file; UNIT where the header does not say it; repeatable)")


def _named_columns(args: argparse.Namespace) -> dict:
    from echemd.protocols.io.text_tables import named_columns

    try:
        return named_columns(args.column)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _add_detection_options(parser: argparse.ArgumentParser) -> None:
    """One --option per field of the short criterion (ccd), named and described as the protocol
    parameter; none where the daemon's packages are missing (``main`` then says so)."""
    try:
        from echemd.protocols.analysis.shorts import ShortDetection
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in DAEMON_MODULES:
            return
        raise
    for name, field in ShortDetection.model_fields.items():
        flags = [f"--{name.replace('_', '-')}"] + (["--threshold-mV"] if name == "drop_threshold_mV" else [])
        parser.add_argument(*flags, dest=name, default=None, metavar="VALUE",
                            help=f"ccd: {field.description} (default {field.default:g}; a run file's own setting where it has one)"
                            if field.default is not None else f"ccd: {field.description}")


def _detection(args: argparse.Namespace, recorded: dict):
    """The short criterion: the run file's recorded parameters, overridden by the options given."""
    from pydantic import ValidationError

    from echemd.protocols.analysis.shorts import ShortDetection

    fields = ShortDetection.model_fields
    values = {name: value for name, value in recorded.items() if name in fields}
    for name in fields:
        given = getattr(args, name)
        if given is not None:
            values[name] = None if given.lower() == "none" else given
    try:
        return ShortDetection(**values)
    except ValidationError as exc:
        problems = "; ".join((f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "") + e["msg"] for e in exc.errors())
        raise UsageError(f"bad short-detection option: {problems}") from exc


def cmd_analyze(args: argparse.Namespace) -> int:
    from echemd.protocols.analysis import records
    from echemd.protocols.io.readers import ccd_chunks, read_table

    named = _named_columns(args)
    try:
        if args.kind == "ccd":  # read in chunks: a week-long run holds tens of millions of rows
            chunks, table = ccd_chunks(args.file, records.CHUNK_ROWS, named)
        else:
            table = read_table(args.file, args.kind, named)
        area = args.area_cm2 if args.area_cm2 is not None else table.area_cm2
        if args.kind == "ccd":
            if area is None:
                raise UsageError(f"{args.file}: give the electrode area with --area-cm2")
            detection = _detection(args, table.metadata.get("parameters", {}))
            sign = {"negative": -1, "positive": 1, None: None}[args.plating_sign]
            result = records.analyze_ccd_chunks(chunks, area_cm2=area, detection=detection, plating_sign=sign)
        elif args.kind == "eis":
            thickness_mm = args.thickness_mm if args.thickness_mm is not None else table.metadata.get("parameters", {}).get("thickness_mm")
            result = records.analyze_eis(*table.spectrum(args.spectrum), circuit=args.circuit, area_cm2=area,
                                          thickness_cm=thickness_mm / 10 if thickness_mm else None, symmetric=args.symmetric)
        else:
            bias, current = table.require("bias_V", "current_A")
            result = records.analyze_cafm(bias, current)
    except (EchemdError, ValueError) as exc:  # an unreadable file, a fit that cannot be made, bad numbers
        raise UsageError(str(exc)) from exc
    print(json.dumps(result))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from echemd.daemon.demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)
    return EXIT_OK if run_demo(args.data_dir) else EXIT_FAILED


VERBS = {"serve": cmd_serve, "demo": cmd_demo, "analyze": cmd_analyze, "keys": cmd_keys, "plot": cmd_plot, "export": cmd_export, "watch": cmd_watch, "run": cmd_run, "status": cmd_status, "runs": cmd_runs, "queue": cmd_queue,
         **{verb: cmd_request for verb in REQUEST_VERBS}}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
