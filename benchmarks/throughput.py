"""Throughput against diffusers, side by side in one run: `python benchmarks/throughput.py [--json]`.

The same as `diffuse bench throughput`; see diffuse/bench.py for what is measured and how.
"""

import json
import sys

from diffuse import bench

if __name__ == "__main__":
    res = bench.run_all(log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(res) if "--json" in sys.argv else bench.table(res))
