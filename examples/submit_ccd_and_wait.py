"""Submit a CCD test, wait for it, print the result.

    python examples/submit_ccd_and_wait.py [--endpoint tcp://127.0.0.1:5710] [--instrument sim-pstat-1]
"""

import argparse
import json

from echemd.daemon.client import Client

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--endpoint", default="tcp://127.0.0.1:5710")
parser.add_argument("--instrument", default="sim-pstat-1")
args = parser.parse_args()

with Client(args.endpoint) as client:
    run_id = client.submit("ccd", args.instrument, diameter_mm=2.0, plating_start_mA_cm2=0.5,
                           plating_increment_mA_cm2=0.5, stripping_mA_cm2=0.2, capacity_mAh_cm2=0.2)
    print(f"submitted {run_id}")
    record = client.wait(run_id)
    print(json.dumps({"status": record["status"], "file": record["file"], **(record["result"] or {})}, indent=2))
