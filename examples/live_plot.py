"""Follow a running run from the data stream and keep a PNG of its voltage up to date.

    python examples/live_plot.py RUN_ID [--endpoint URL] [-o live.png]

Every sample arrives once and in order (gaps are repaired from the daemon), so the plot is the run
file's content as it grows.  Ends when the run ends.  Needs matplotlib beside the client
(`pip install echemd matplotlib`; the daemon's extra has it).
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from echemd.daemon.client import Client  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run_id")
parser.add_argument("--endpoint", default="tcp://127.0.0.1:5710")
parser.add_argument("-o", "--output", default="live.png")
args = parser.parse_args()

times, voltages = [], []
with Client(args.endpoint) as client:
    for k, block in enumerate(client.subscribe(args.run_id)):
        times.append(block.columns["time_s"])
        voltages.append(block.columns.get("voltage_V", block.columns.get("bias_V")))
        if k % 20 == 0:
            figure, axis = plt.subplots(figsize=(8, 3.5))
            axis.plot(np.concatenate(times) / 3600, np.concatenate(voltages) * 1e3, lw=0.8)
            axis.set_xlabel("time (h)")
            axis.set_ylabel("voltage (mV)")
            figure.tight_layout()
            figure.savefig(args.output)
            plt.close(figure)
print(f"{sum(len(t) for t in times)} samples streamed; plot in {args.output}")
