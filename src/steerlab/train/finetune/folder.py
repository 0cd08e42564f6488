"""Run an online-RL config in its run folder: guarded, locked, resumed when it holds this run."""

from __future__ import annotations

from pathlib import Path

from steerlab.core.outdir import output_dir
from steerlab.train.finetune.config import FinetuneConfig
from steerlab.train.finetune.finetuner import Finetuner


def run_folder(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False) -> Finetuner:
    """Run (or resume) `cfg` in its run folder, holding the folder's lock; returns the finished Finetuner.

    The folder must be new, or hold this kind of run (resumed; its recorded arguments must match), or be
    moved aside with `overwrite`. It may never be or contain the base checkpoint.
    """
    tuner = Finetuner(cfg, progress)
    with output_dir(tuner.out, "finetune", resume=resume, overwrite=overwrite, inputs=[cfg.base]) as (_, resumed):
        tuner.run(resume=resumed)
    return tuner


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False) -> Path:
    return run_folder(cfg, progress, resume, overwrite).out
