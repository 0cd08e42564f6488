"""Private online personalization: a finetune run whose shareable output is its user's sealed part.

`finetune_sealed(cfg, key)` trains `cfg` as `steerlab finetune` does, in a run folder made private (mode
0700: it holds the user's env/reward options, metrics, training state and the steered policy in clear),
then seals the steering actor, its options and the run's scores for `key` into `<run>.sealed/`, a
one-user sealed release bound to the public base (steerlab.privacy.sealed.online). The key is an argument, never
a FinetuneConfig field: it reaches no config, metrics, log or exception.
"""

from __future__ import annotations

from pathlib import Path

from steerlab.core.errors import OutputExistsError, UserError
from steerlab.core.outdir import output_dir
from steerlab.core.refs import is_ref
from steerlab.privacy.keys import UserKey
from steerlab.privacy.sealed.online import part_dir, seal_online_run
from steerlab.train.finetune.config import FinetuneConfig
from steerlab.train.finetune.folder import run_folder


def check_part_dir(part: Path, overwrite: bool) -> None:
    """Refuse, before any training, a sealed-part folder that would be refused after it."""
    if part.exists() and any(part.iterdir()) and not overwrite:
        raise OutputExistsError(f"{part} (the sealed part of this run) exists and is not empty; pass --overwrite to "
                                f"move it aside, or another --out")


def finetune_sealed(cfg: FinetuneConfig, key: UserKey, progress: bool = True, resume: bool = True,
                    overwrite: bool = False):
    """(finished Finetuner, sealed part folder or None if the run was interrupted)."""
    if not isinstance(key, UserKey):
        raise UserError("finetune_sealed needs a UserKey (steerlab.privacy.keys.load_key_file)")
    if is_ref(cfg.base) or not Path(cfg.base).is_dir():
        raise UserError(f"--key needs the base as a checkpoint folder (the sealed part copies it bit for bit and "
                        f"binds to its weights and config), got {cfg.base!r}")
    if cfg.out:
        check_part_dir(part_dir(cfg.out), overwrite)
    tuner = run_folder(cfg, progress, resume=resume, overwrite=overwrite, private=True)
    if tuner.interrupted:
        return tuner, None
    part = part_dir(tuner.out)
    with output_dir(part, "online-part", overwrite=overwrite, inputs=[cfg.base, tuner.out]) as (folder, _):
        seal_online_run(tuner.out, key, folder, cfg.base)
    return tuner, part
