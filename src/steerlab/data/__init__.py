"""Demonstration datasets (LeRobotDataset v3): `Recorder` for your own loop, `steerlab collect` for policies."""

from steerlab.data.recorder import Recorder

__all__ = ["Recorder"]
