"""Run an online-RL config in its run folder: guarded, locked, resumed when it holds this run."""

from __future__ import annotations

from pathlib import Path

from steerlab.core.outdir import output_dir
from steerlab.train.finetune.config import FinetuneConfig
from steerlab.train.finetune.finetuner import Finetuner


def run_folder(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False,
               private: bool = False) -> Finetuner:
    """Run (or resume) `cfg` in its run folder, holding the folder's lock; returns the finished Finetuner.

    The folder must be new, or hold this kind of run (resumed; its recorded arguments must match), or be
    moved aside with `overwrite`. It may never be or contain the base checkpoint. `private`: the folder is made
    mode 0700 before anything is written into it (a private online run: its config, metrics and policy are the
    user's personal data).
    """
    tuner = Finetuner(cfg, progress)
    with output_dir(tuner.out, "finetune", resume=resume, overwrite=overwrite, inputs=[cfg.base]) as (folder, resumed):
        if private:
            folder.chmod(0o700)
        tuner.run(resume=resumed)
    return tuner


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False) -> Path:
    return run_folder(cfg, progress, resume, overwrite).out
