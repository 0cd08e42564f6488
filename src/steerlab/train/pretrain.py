"""Behaviour cloning of the flow-matching policy, with the VIB trained jointly or post hoc.

`vib_only` fits the VIB post hoc on a frozen policy: the flow policy's own (trained with its flow loss),
or, for any other policy that implements the steerable-policy protocol (a checkpoint of another kind or
`module:factory`), a plug-in VIB on its embeddings (policies/plugin_vib.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from steerlab.core.checkpoint import CheckpointError
from steerlab.core.config import check_count
from steerlab.core.devices import autocast, gather, resident, resolve_device
from steerlab.core.errors import UserError
from steerlab.core.logger import RunLogger
from steerlab.core.observations import IMAGE_PREFIX, STATE_KEY, image_key, to_policy_obs
from steerlab.core.outdir import check_not_input
from steerlab.core.progress import progress_bar
from steerlab.data.dataset import Dataset, chunk_indices, read_dataset
from steerlab.policies.factory import load_policy_source
from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig
from steerlab.policies.flow_matching.checkpointing import save_flow_policy
from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib, latent_stats, save_plugin_vib_policy


@dataclass
class PretrainConfig:
    dataset: str = ""
    """LeRobotDataset v3 folder written by `steerlab collect`."""
    out: str = "runs/pretrain/policy"
    """Checkpoint folder to write."""
    steps: int = 2000
    """Gradient steps. Few on purpose: a mildly under-trained base leaves room for online RL."""
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-6
    seed: int = 0
    vib_only: bool = False
    """Train only the VIB on the frozen policy loaded from `from_ckpt` (plug-in, post hoc)."""
    from_ckpt: str | None = None
    """The frozen policy for `vib_only`: a checkpoint folder or 'module:factory'."""
    log_every: int = 100
    num_threads: int = 1
    """torch threads; one run per core is the efficient layout on small machines."""
    policy: dict = field(default_factory=dict)
    """Overrides of FlowPolicyConfig fields (horizon, n_action_steps, latent_dim, vib_beta, ...)."""
    device: str = "cpu"
    """'auto' | 'cpu' | 'cuda' | 'mps': where the model and batches live (the checkpoint is saved from the CPU)."""
    amp: bool = False
    """bf16 autocast on CUDA (ignored with a warning elsewhere)."""


def pretrain_plugin_vib(cfg: PretrainConfig, policy, meta: dict, tensors: dict, ds: Dataset, progress: bool) -> Path:
    """The plug-in VIB on a policy steerlab did not train; `cfg.policy` holds PluginVIBConfig overrides."""
    vcfg = PluginVIBConfig.from_dict({"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                      "seed": cfg.seed, **cfg.policy})
    t0 = time.perf_counter()
    wrapped = fit_plugin_vib(policy, ds.observations, vcfg, base_meta=meta, base_tensors=tensors, progress=progress)
    return save_plugin_vib_policy(wrapped, cfg.out, extra={"pretrain": {
        **asdict(cfg), "seconds": time.perf_counter() - t0, "dataset_episodes": ds.num_episodes,
        "dataset_frames": int(len(ds.observations)), "dataset_info": ds.info.get("steerlab", {})}})


def pretrain(cfg: PretrainConfig, progress: bool = True) -> Path:
    check_count("steps", cfg.steps)
    check_count("batch_size", cfg.batch_size)
    check_count("log_every", cfg.log_every)
    check_not_input(cfg.out, [cfg.dataset or None, cfg.from_ckpt])
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ds = read_dataset(cfg.dataset)
    task = ds.task or ds.extra.get("task")  # the dataset's own task string (LeRobot's meta/tasks.parquet)

    if cfg.vib_only:
        if not cfg.from_ckpt:
            raise UserError("--vib-only needs --from: the frozen policy (a checkpoint folder or module:factory)")
        base, meta, tensors = load_policy_source(cfg.from_ckpt)
        if not isinstance(base, FlowMatchingPolicy):
            return pretrain_plugin_vib(cfg, base, meta, tensors, ds, progress)
        pcfg = FlowPolicyConfig.from_dict({**base.config.to_dict(), "use_vib": True, **cfg.policy})
        policy = FlowMatchingPolicy(pcfg)
        # copy everything but the VIB from the frozen policy: the VIB is always trained afresh here
        frozen = {k: v for k, v in base.state_dict().items() if not k.startswith("vib.")}
        missing, unexpected = policy.load_state_dict(frozen, strict=False)
        if unexpected or any(not k.startswith("vib.") for k in missing):
            raise CheckpointError(f"{cfg.from_ckpt}: weights do not fit the policy (missing {missing[:3]})")
        for p in policy.imitation_parameters():
            p.requires_grad_(False)
        params = policy.vib_parameters()
    else:
        # a dataset with camera features gives a camera policy (its cameras and frame size)
        cams = {k.removeprefix(IMAGE_PREFIX): v.shape[1:3] for k, v in ds.images.items()}
        vision = {"cameras": sorted(cams), "image_size": list(next(iter(cams.values())))} if cams else {}
        pcfg = FlowPolicyConfig.from_dict({
            "obs_dim": ds.observations.shape[1], "action_dim": ds.actions.shape[1], **vision,
            "env": {"suite": ds.extra.get("env", "metaworld"), "task": task,
                    "max_steps": ds.extra.get("max_steps", 200),
                    # the shift the demonstrations were collected under (coverage region), if any
                    **({"demo_shift": ds.extra["shift"]} if ds.extra.get("shift") else {})},
            **cfg.policy})
        policy = FlowMatchingPolicy(pcfg)
        policy.obs_norm.fit(ds.stats["observation.state"]["mean"], ds.stats["observation.state"]["std"])
        policy.action_norm.fit(ds.stats["action"]["mean"], ds.stats["action"]["std"])
        params = list(policy.parameters())

    obs = torch.as_tensor(ds.observations)
    actions = torch.as_tensor(ds.actions)
    cidx = torch.as_tensor(chunk_indices(ds, pcfg.horizon))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    logger = RunLogger(out, tensorboard=False)
    t0 = time.perf_counter()
    bar = progress_bar(range(1, cfg.steps + 1), desc=f"pretrain {task}{' (vib only)' if cfg.vib_only else ''}",
               disable=not progress, unit="step")
    spec = policy.observation_spec
    policy.to(device).train()

    # the training set where it feeds the device fastest (core/devices.resident: on a GPU with room, whole, frames
    # as uint8); batches are gathered there and frames converted per batch (uint8 HWC -> float CHW) on the device
    images = {image_key(c): torch.from_numpy(ds.images[image_key(c)]) for c in spec.cameras} if spec.has_images else {}
    data = resident({"obs": obs, "actions": actions, "cidx": cidx, **images}, device)

    def batch_obs(b):
        if not spec.has_images:
            return gather(data["obs"], b, device)
        return to_policy_obs({STATE_KEY: gather(data["obs"], b, device),
                              **{k: gather(data[k], b, device) for k in images}}, spec)

    for step in bar:
        b = torch.randint(0, len(obs), (cfg.batch_size,), generator=gen)
        chunk = gather(data["actions"], gather(data["cidx"], b, data["actions"].device), device)
        with autocast(device, cfg.amp):
            loss, logs = policy.compute_loss(batch_obs(b), chunk, train_policy=not cfg.vib_only,
                                             train_vib=True, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            logger.log(step, **logs)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
    seconds = time.perf_counter() - t0
    logger.close()
    policy.cpu().eval()  # checkpoints hold CPU tensors: they load on any device
    policy.config.act_through_vib = policy.vib is not None
    save_flow_policy(policy, out, extra={
        "pretrain": {**asdict(cfg), "seconds": seconds, "dataset_episodes": ds.num_episodes,
                     "dataset_frames": int(len(obs)), "dataset_info": ds.extra,
                     "dataset_tasks": ds.tasks},
        "latent_stats": latent_stats(policy, {STATE_KEY: ds.observations, **ds.images} if spec.has_images
                                     else ds.observations),
    })
    return out
