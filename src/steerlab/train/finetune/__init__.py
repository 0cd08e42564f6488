"""Online RL on a frozen pretrained policy through a steering method (ZPRL or a baseline), in any env.

The package, by the order a reader needs it:
- `config.py`     FinetuneConfig (every default written once), rewards, SAC presets, resume-free fields
- `finetuner.py`  Finetuner: the run's state and how it collects experience (N envs, batched decisions)
- `loop.py`       the loop, top to bottom, and `run` (resume, final policy, result.json)
- `callbacks.py`  evaluation, snapshots, signals, progress
- `snapshots.py`  resumable training state (manifest-verified snapshot folders) and the run record
- `envs.py`       the training envs (vectorized, success-terminating, stepped while SAC updates run)
- `folder.py`     `run_folder` / `finetune`: a config run in its guarded, locked folder
(its command line is `steerlab.cli.finetune`)
"""

from steerlab.train.finetune.config import FIELD_DEFAULTS, PRESETS, REWARDS, FinetuneConfig, default_run_dir
from steerlab.train.finetune.envs import make_train_envs, train_env
from steerlab.train.finetune.finetuner import Finetuner
from steerlab.train.finetune.folder import finetune, run_folder
from steerlab.train.finetune.snapshots import MANIFEST, STATE_DIR, base_digest, file_digest

__all__ = ["FIELD_DEFAULTS", "MANIFEST", "PRESETS", "REWARDS", "STATE_DIR", "FinetuneConfig", "Finetuner",
           "base_digest", "default_run_dir", "file_digest", "finetune", "make_train_envs", "run_folder",
           "train_env"]
