"""EIS of several cells (or one cell at several temperatures) in a batch, one after the other.

    python examples/eis_batch.py [--endpoint URL] [--instruments sim-pstat-1 sim-pstat-2] [--labels 25C 40C]

Each spectrum is fitted by the daemon; the script prints one line per spectrum: label, total ASR,
each arc's ASR and capacitance, and whether the Kramers-Kronig test passed.  With a temperature
chamber, set the temperature between submissions; here the labels are just carried along.
"""

import argparse
import math

from echemd.daemon.client import Client

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--endpoint", default="tcp://127.0.0.1:5710")
parser.add_argument("--instruments", nargs="+", default=["sim-pstat-1", "sim-pstat-2"])
parser.add_argument("--labels", nargs="+", default=["25C"])
parser.add_argument("--area-cm2", type=float, default=math.pi * 0.1**2)
args = parser.parse_args()

with Client(args.endpoint) as client:
    runs = [(label, instrument, client.submit("eis", instrument, start_Hz=1e6, end_Hz=0.1, points_per_decade=8, area_cm2=args.area_cm2))
            for label in args.labels for instrument in args.instruments]
    for label, instrument, run_id in runs:
        result = client.wait(run_id)["result"]
        arcs = "; ".join(f"{a['assignment']}: {a['asr_ohm_cm2']:.1f} Ohm cm2, {a['capacitance_F_cm2']:.2e} F/cm2" for a in result["arcs"])
        print(f"{label} {instrument}: ASR {result['asr_ohm_cm2']['total']:.1f} Ohm cm2 ({arcs}); KK {'ok' if result['kk']['valid'] else 'FAILED'}")
