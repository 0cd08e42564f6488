"""Imported first by the LeRobot interop tests (`make test-lerobot`): nothing there may reach a hub, so the
Hugging Face libraries are put offline and their caches into a temporary folder before LeRobot loads.
"""

import atexit
import os
import shutil
import tempfile

_cache = tempfile.mkdtemp(prefix="steerlab-hf-cache-")
atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = _cache
os.environ["HF_LEROBOT_HOME"] = os.path.join(_cache, "lerobot")
os.environ.setdefault("WANDB_MODE", "disabled")
