"""Feed a live echemd run into a bluesky callback, as a facility's RunEngine would feed it.

The run's documents (start, descriptor, an event page per block, stop) go to a callback built on
event-model's DocumentRouter, the base of bluesky's own callbacks; any ``(name, doc)`` callable
takes them the same way: bluesky's LiveTable or BestEffortCallback, a TiledWriter, a suitcase
serializer, or bluesky-kafka's Publisher to put them on a Kafka topic.

    python examples/bluesky_live.py [--endpoint tcp://127.0.0.1:5710] [--instrument sim-pstat-1]

Needs event-model beside the client (`pip install echemd event-model`; the daemon's extra has it).
"""

import argparse

import event_model

from echemd.daemon.bluesky import feed, live_documents
from echemd.daemon.client import Client


class PolarizationTable(event_model.DocumentRouter):
    """Prints one line per event page: the samples so far and the latest voltage."""

    def start(self, doc):
        print(f"start  {doc['plan_name']} on {doc['instrument']} (echemd run {doc['echemd_run_id']}, sample {doc.get('sample', '-')})")

    def event_page(self, doc):
        last = doc["seq_num"][-1]
        print(f"events {last:6d}  voltage {doc['data']['voltage_V'][-1] * 1e3:8.2f} mV")

    def stop(self, doc):
        print(f"stop   {doc['exit_status']} after {doc['num_events'].get('primary', 0)} events {doc['reason']}")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--endpoint", default="tcp://127.0.0.1:5710")
parser.add_argument("--instrument", default="sim-pstat-1")
args = parser.parse_args()

with Client(args.endpoint) as client:
    run_id = client.submit("plate-until-short", args.instrument, diameter_mm=2.0, current_mA_cm2=0.5, max_hours=0.05,
                           sample_interval_s=1.0, metadata={"sample": "LPSCl-07"})
    documents = feed(live_documents(client, run_id), PolarizationTable())
    print(f"{documents} documents")
