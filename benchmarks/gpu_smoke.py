"""GPU smoke run: `python benchmarks/gpu_smoke.py` is `steerlab bench gpu_smoke` (steerlab/bench/gpu_smoke.py)."""

import sys

from steerlab.bench.gpu_smoke import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
