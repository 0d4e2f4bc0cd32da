"""Runs as bluesky event-model documents: every document passes event-model's own schema
validation, one event per sample, and the live documents equal the exported ones."""

import json
import subprocess
import sys
import time
from pathlib import Path

import event_model
import h5py
import numpy as np

from echemd.daemon.bluesky import feed, live_documents
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

ECHEMD = [sys.executable, "-m", "echemd.daemon.cli"]


def validate(name, doc):
    event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)


def rows(documents):
    """The event rows of documents' pages: {column: values}, seq_nums, times."""
    pages = [doc for name, doc in documents if name == "event_page"]
    data = {key: np.array([np.nan if x is None else x for page in pages for x in page["data"][key]]) for key in pages[0]["data"]}
    return data, [s for page in pages for s in page["seq_num"]], [t for page in pages for t in page["time"]]


def test_a_ccd_with_spectra_exports_as_valid_documents_one_event_per_sample(lab, tmp_path):
    daemon = Daemon(lab(), sim_speed="max")
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, eis_at=["end"],
                                               metadata={"sample": "LPSCl-07", "operator": "ana", "stack_pressure_MPa": 5}), timeout_s=60)
    finally:
        daemon.close()
    out = tmp_path / "run.jsonl"
    done = subprocess.run([*ECHEMD, "export", record["file"], "--format", "bluesky", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    documents = [tuple(json.loads(line)) for line in out.read_text().splitlines()]
    for name, doc in documents:
        validate(name, doc)
    names = [name for name, _ in documents]
    assert names[:2] == ["start", "descriptor"] and names[-1] == "stop" and set(names[2:-1]) == {"event_page"}
    start, descriptor, stop = documents[0][1], documents[1][1], documents[-1][1]
    assert start["plan_name"] == "ccd" and start["echemd_run_id"] == record["run_id"] and start["instrument"] == "sim-pstat-1"
    assert start["sample"] == "LPSCl-07" and start["operator"] == "ana" and start["stack_pressure_MPa"] == 5
    assert start["parameters"]["eis_at"] == ["end"] and start["parameters"]["diameter_mm"] == 2.0
    assert descriptor["run_start"] == start["uid"] and descriptor["data_keys"]["voltage_V"]["units"] == "V"
    assert descriptor["data_keys"]["frequency_Hz"]["units"] == "Hz"
    data, seq, times = rows(documents)
    n = record["n_samples"]
    assert seq == list(range(1, n + 1)) and stop["num_events"] == {"primary": n}
    assert stop["exit_status"] == "success" and stop["run_start"] == start["uid"]
    with h5py.File(record["file"], "r") as f:
        for column in ("time_s", "current_A", "voltage_V", "frequency_Hz", "z_real_ohm"):  # NaN (not measured) came back as None
            np.testing.assert_array_equal(data[column], f["data"][column][:])
        t0 = float(f.attrs["t0_unix_s"])
    assert np.allclose(times, t0 + data["time_s"]) and start["time"] == t0
    assert np.isnan(data["frequency_Hz"]).sum() > 0 and np.isfinite(data["frequency_Hz"]).sum() > 0


class Collector(event_model.DocumentRouter):
    """A bluesky callback (event-model's router, the base of bluesky's own callbacks) keeping what it gets."""

    def __init__(self):
        super().__init__()
        self.documents = []

    def __call__(self, name, doc, validate=False):
        self.documents.append((name, doc))
        return super().__call__(name, doc, validate)


def test_a_live_run_in_a_host_drives_a_bluesky_callback_with_the_documents_its_file_exports(lab, tmp_path):
    daemon = Daemon(lab(instrument_hosts=1), sim_speed=30.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=0.5, max_hours=0.01, sample_interval_s=0.1)
            callback = Collector()
            count = feed(live_documents(client, run_id), callback, validate)
            record = client.wait(run_id)
    finally:
        daemon.close()
    live = callback.documents
    assert count == len(live) and live[0][0] == "start" and live[-1][0] == "stop" and live[-1][1]["exit_status"] == "success"
    exported = tmp_path / "run.jsonl"
    subprocess.run([*ECHEMD, "export", record["file"], "--format", "bluesky", "-o", str(exported)], check=True, timeout=120)
    from_file = [tuple(json.loads(line)) for line in exported.read_text().splitlines()]
    live_rows, file_rows = rows(live), rows(from_file)
    assert live_rows[1] == file_rows[1] == list(range(1, record["n_samples"] + 1))
    for column in file_rows[0]:
        np.testing.assert_array_equal(live_rows[0][column], file_rows[0][column])
    assert live[-1][1]["num_events"] == from_file[-1][1]["num_events"] == {"primary": record["n_samples"]}


def test_an_aborted_run_stops_with_abort_and_its_reason(lab):
    daemon = Daemon(lab(), sim_speed=1.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
            while client.status(run_id)["n_samples"] < 3:
                time.sleep(0.05)
            client.abort(run_id)
            record = client.wait(run_id, timeout_s=10)
    finally:
        daemon.close()
    from echemd.daemon.bluesky import file_documents

    name, stop = list(file_documents(Path(record["file"])))[-1]
    validate(name, stop)
    assert stop["exit_status"] == "abort" and stop["reason"] == "aborted on request"
