"""Moved to `steerlab.core.checkpoint` (shared by every stage); kept so v1 imports keep working."""

from steerlab.core.checkpoint import *  # noqa: F401,F403
from steerlab.core.checkpoint import load_policy, save_checkpoint  # noqa: F401
