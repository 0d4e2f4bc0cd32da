"""Watch several daemons at once: one status line per instrument, refreshed every second.

    python examples/watch_daemons.py tcp://127.0.0.1:5710 tcp://lab-b:5710 [--rounds N]
"""

import argparse
import time

from echemd.daemon.client import Client

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("endpoints", nargs="+")
parser.add_argument("--rounds", type=int, default=0, help="stop after N refreshes (0: never)")
args = parser.parse_args()

clients = [Client(endpoint, timeout_s=2.0) for endpoint in args.endpoints]
rounds = 0
while True:
    for client in clients:
        try:
            for instrument in client.instruments():
                run = instrument["current_run"]
                extra = ""
                if run:
                    status = client.status(run)
                    extra = f"{status['protocol']} {status['status']} {status['n_samples']} samples"
                print(f"{client.endpoint:<28} {instrument['name']:<14} {instrument['state']:<8} {extra}")
        except TimeoutError:
            print(f"{client.endpoint:<28} (no answer)")
    rounds += 1
    if args.rounds and rounds >= args.rounds:
        break
    time.sleep(1.0)
    print()
for client in clients:
    client.close()
