"""What one online-RL run computes: `FinetuneConfig` (every default written here once), the reward kinds, the
named SAC presets, and which fields a resume may change."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from steerlab.core.config import build, check_count, check_keys, check_scale, check_types
from steerlab.core.errors import UserError
from steerlab.envs.registry import EnvSpec, resolve_env
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import method_class


@dataclass
class FinetuneConfig:
    base: str = ""
    """Pretrained policy (frozen throughout): a checkpoint folder, or 'module:factory' for any policy that
    implements the steerable-policy protocol (docs/protocol.md)."""
    method: str = "zprl"
    """A registered steering method (steerlab.rl.steering.REGISTRY; a pip package can add one)."""
    env: str | None = None
    """Meta-World task, Gymnasium id or 'module:factory'; default: the base checkpoint's environment."""
    success_key: str | None = None
    """`info` key that signals success; None: the env family's ('is_success')."""
    position_key: str | None = None
    """`info` key of the end-effector position (smoothness); None: the family's ('hand_pos' on Meta-World),
    'none': the env has none."""
    shift: str | None = None
    """Named deployment shift (steerlab.envs.shifts) applied to the training env."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments for the env constructor."""
    env_steps: int = 100_000
    """Environment steps of online interaction."""
    seed: int = 0
    """Seeds everything the run draws (SAC, exploration, sampler noise, episode seeds): same seed, same numbers."""
    out: str | None = None
    """Run folder; default runs/finetune/<env>__<method>__seed<k>."""
    reward: str = "dense"
    """dense (shaped/10 + success bonus) | sparse (1 on success)."""
    gamma: float = 0.99
    """Discount per env step (a chunk of k executed steps is discounted by γ^k)."""
    max_steps: int | None = None
    """Episode horizon; None: the env spec's (Meta-World: 200, a Gymnasium id: its registered limit)."""
    warmup_decisions: int = 2_000
    """First decisions act with zero residual / the base's own noise (the base policy) to fill the buffer."""
    eval_every: int = 5_000
    """Environment steps between deterministic evaluations."""
    eval_episodes: int = 20
    """Episodes per evaluation of the learning curve (fixed evaluation seeds, disjoint from training's)."""
    sampler_noise_scale: float | str = "auto"
    """Scale of the frozen sampler's initial noise ε, in training decisions, in the evaluations the curve
    (AUC, dip) is made of and in the deployed steered policy: 1 is the base's own sampler; 0 integrates every
    chunk from ε = 0, so the actor's own exploration is the only randomness. 'auto' (the default): the
    sampler-mode rule (train/finetune/mode.py) picks 0 or 1 from the base's evaluations both ways before
    training. Methods that choose ε themselves (dsrl, dsrl-na, zprl-noise) only use it in warm-up ('auto': 1).
    result.json's final success is measured both ways whatever it is, the trained mode labelled."""
    mode_episodes: int = 50
    """Episodes per mode of the base's evaluation that `sampler_noise_scale='auto'` decides from (seeds of the
    'mode' split, disjoint from the curve's); unused otherwise."""
    release_gate_episodes: int = 20
    """After training, the steered policy and the base play these many episodes of the 'gate' seed split (same
    seeds, disjoint from the curve's, the final evaluation's and the mode rule's); if the steered policy's mean
    per-episode difference is below 0 (success where the env reports it, then return), the run releases the base
    in policy/ and warns (train/finetune/gate.py; result.json's `release`). 0: no gate (always the steered one)."""
    checkpoint_every: int = 10_000
    """Environment steps between resumable training-state snapshots (taken once every env ends its episode)."""
    buffer_size: int = 200_000
    """Replay capacity in transitions (one per decision; it stores frozen features, never frames)."""
    final_episodes: int = 50
    """Fresh evaluation episodes of the final policy (sampled and from ε = 0) for result.json; 0: none
    (AUC and dip only)."""
    n_envs: int = 1
    """Environments stepped together; each decision is one batched actor + steering call over the envs
    that need a new chunk."""
    async_envs: bool = False
    """Step the envs in subprocesses, overlapping the simulators with the SAC updates (same numbers)."""
    utd: float | None = None
    """Gradient updates per decision (per stored transition); None: sac.utd. Fractions accumulate."""
    num_threads: int = 1
    """torch threads of this run (one run per core is the fastest use of a CPU)."""
    device: str = "auto"
    """Where the base policy and the SAC compute: auto (cuda if available, else mps, else cpu) | cpu | cuda[:i] |
    mps. Environments, the replay buffer and every random draw of the loop stay on the CPU (batches move), so
    a CPU run's numbers do not depend on this flag."""
    tensorboard: bool = True
    """Also write TensorBoard event files beside metrics.jsonl."""
    sac: SACConfig = field(default_factory=lambda: SACConfig(**PRESETS["bench"]))
    """The learner's settings; default the 'bench' preset (what the README tables measured)."""
    sac_explicit: list[str] = field(default_factory=list)
    """SAC fields the user set on purpose (`--sac-json`): the method's start never overrides them, even when the
    value equals SACConfig's default (e.g. `{"actor_tether": 0}` turns DSRL's tether off)."""
    steering: dict = field(default_factory=dict)
    """Options of the steering method (its config dataclass in rl/steering/<method>.py)."""

    def __post_init__(self):
        check_types(self, "FinetuneConfig")
        for name in ("env_steps", "eval_every", "eval_episodes", "checkpoint_every", "buffer_size", "num_threads",
                     "n_envs"):
            check_count(f"FinetuneConfig.{name}", getattr(self, name))
        if self.max_steps is not None:
            check_count("FinetuneConfig.max_steps", self.max_steps)
        check_count("FinetuneConfig.warmup_decisions", self.warmup_decisions, minimum=0)
        if isinstance(self.sampler_noise_scale, str) and self.sampler_noise_scale != "auto":
            raise UserError(f"sampler_noise_scale must be 'auto' or a finite number >= 0, got "
                            f"{self.sampler_noise_scale!r}")
        if self.sampler_noise_scale != "auto":  # an explicit number keeps it exactly
            check_scale("sampler_noise_scale", self.sampler_noise_scale)
        check_count("FinetuneConfig.mode_episodes", self.mode_episodes)
        check_count("FinetuneConfig.release_gate_episodes", self.release_gate_episodes, minimum=0)
        if self.reward not in REWARDS:
            raise UserError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if not 0.0 < self.gamma < 1.0:
            raise UserError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.utd is not None and not self.utd > 0:
            raise UserError(f"utd must be > 0, got {self.utd}")
        method_class(self.method).Config.from_dict(self.steering)  # unknown method or option: one line
        if self.shift is not None:
            from steerlab.envs.shifts import shift_name

            self.shift = shift_name(self.shift)  # canonical name in config.json; an unknown one fails here

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        """Rebuild from `to_dict()`; unknown keys or wrong types are one-line errors naming them."""
        d = dict(d)
        if "task" in d:  # v1 configs named the (Meta-World) env 'task'
            d.setdefault("env", d.pop("task"))
        check_keys(cls, d, "finetune config")
        sac = build(SACConfig, d.pop("sac", {}), "sac config")
        return cls(sac=sac, **d)

    def env_spec(self, recorded: dict | None) -> EnvSpec:
        """The env of this run: `env` (or the base's recorded env) with this config's overrides."""
        if not self.env and not recorded:
            raise UserError("the base policy names no environment; pass --env")
        source = self.env if self.env else EnvSpec.from_dict(recorded)
        position = "" if self.position_key is None else (None if self.position_key == "none" else self.position_key)
        return resolve_env(source, max_steps=self.max_steps, success_key=self.success_key, position_key=position,
                           shift=self.shift, kwargs=self.env_kwargs)


REWARDS = ("dense", "sparse")
FIELD_DEFAULTS = {f.name: f.default for f in fields(FinetuneConfig) if f.default is not MISSING}
# what a field absent from a run recorded before it existed computed with (a resume and the benchmarks' record
# checks read such runs this way; the sampler rule came later, and every run before it sampled at scale 1)
ABSENT_MEANS = {**FIELD_DEFAULTS, "sampler_noise_scale": 1.0, "final_episodes": 0, "release_gate_episodes": 0}
# fields a resume may change: where the run lives and how it is shown, not what it computes
# (env_steps may only grow; the base is compared by content, so another path to the same files is fine)
# (async_envs changes where the simulators run, not the numbers)
# sac_explicit only says how the SAC settings were spelled; the resolved `sac` they produce is compared
# release_gate_episodes acts after training (which policy is released), not on what training computes
# (device is not free: the SAC's random stream lives on its device, so a run continues where it started)
RESUME_FREE = ("env_steps", "out", "num_threads", "tensorboard", "base", "async_envs", "final_episodes",
               "sac_explicit", "release_gate_episodes")


# Named SAC settings. 'bench' is what steerlab.bench.finetune measured (hidden 128: one update costs 6.0 ms
# vs 12.2 ms at 256 on one core, benchmarks/results/sac_update_speed.json) and the CLI's default, so the
# README's command reproduces the tables; 'paper' is the ZPRL paper's width; 'dsrl-paper' is the bench actor with
# the critics of DSRL's published recipe (LayerNorm, 3 × 2048, UTD 20), for any method alike: on one CPU core one
# of its updates costs ~130× a bench update (benchmarks/results/critic_scale_cost.json, docs/zprl.md).
PRESETS = {"bench": {"hidden": 128}, "paper": {"hidden": 256},
           "dsrl-paper": {"hidden": 128, "critic_hidden": 2048, "critic_layers": 3, "critic_layer_norm": True,
                          "utd": 20}}


def default_run_dir(env: str, method: str, seed: int) -> Path:
    name = env.replace(":", "_").replace("/", "_")
    return Path("runs") / "finetune" / f"{name}__{method}__seed{seed}"


def warn_if_warmup_fills_the_run(cfg: FinetuneConfig, k: int) -> None:
    """A run whose warm-up (decisions of k env steps each) is as long as its budget would train nothing: say so."""
    import sys

    if cfg.warmup_decisions * k >= cfg.env_steps:
        print(f"warning: the warm-up ({cfg.warmup_decisions} decisions = {cfg.warmup_decisions * k} env steps) is as "
              f"long as the run ({cfg.env_steps} env steps): no SAC update will run; lower --warmup-decisions or "
              f"raise --env-steps", file=sys.stderr)
