"""GPU smoke test (`steerlab bench gpu_smoke`): collect 2 pixel episodes, pretrain 50 steps, finetune zprl 200 env
steps and evaluate 2 episodes with --device cuda, timed into benchmarks/results/gpu_smoke.json; without a GPU it
prints 'no GPU: skipped' and exits 0. The code is steerlab.bench.gpu_smoke."""

import sys

from steerlab.bench.gpu_smoke import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
