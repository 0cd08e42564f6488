"""Where the actor starts (issue 13): zero-mean / fixed-std initialisation, critic-only decisions, method defaults."""

import json

import numpy as np
import pytest
import torch

from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import make_adapter
from steerlab.train.finetune import FinetuneConfig, Finetuner


def test_zero_mean_fixed_std_start():
    sac = SAC(6, 3, SACConfig(hidden=16, actor_init_zero_mean=True, actor_init_std=0.3), seed=0)
    obs = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(sac.act(obs, deterministic=True), np.zeros((5, 3), np.float32))
    _, log_std = sac.actor(torch.as_tensor(obs))
    np.testing.assert_allclose(log_std.exp().detach().numpy(), 0.3, rtol=1e-5)
    with pytest.raises(ValueError, match="actor_init_std"):
        SACConfig(actor_init_std=100.0)


def test_critic_only_updates_leave_the_actor_alone():
    sac = SAC(4, 2, SACConfig(hidden=16, batch_size=8), seed=0)
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(8, 4, generator=g), "action": torch.rand(8, 2, generator=g) * 2 - 1,
             "reward": torch.rand(8, generator=g), "next_obs": torch.randn(8, 4, generator=g),
             "discount": torch.full((8,), 0.99), "terminated": torch.zeros(8)}
    actor0 = {k: v.clone() for k, v in sac.actor.state_dict().items()}
    critic0 = {k: v.clone() for k, v in sac.critic.state_dict().items()}
    sac.update(batch, update_actor=False)
    assert all(torch.equal(v, actor0[k]) for k, v in sac.actor.state_dict().items())
    assert not all(torch.equal(v, critic0[k]) for k, v in sac.critic.state_dict().items())
    sac.update(batch)
    assert not all(torch.equal(v, actor0[k]) for k, v in sac.actor.state_dict().items())


def test_method_starts(base_ckpt):
    meta = json.loads((base_ckpt / "config.json").read_text())
    base = load_policy(base_ckpt)
    zprl = make_adapter(base, "zprl", {}, meta["latent_stats"])
    assert zprl.resolve_sac(SACConfig()).actor_init_zero_mean and zprl.critic_warmup == 1000
    dsrl = make_adapter(base, "dsrl", {}, meta["latent_stats"])
    s = dsrl.resolve_sac(SACConfig())
    assert s.target_entropy == 0.0 and s.actor_init_std == 0.8 and s.actor_tether == 1.0
    assert zprl.resolve_sac(SACConfig()).actor_tether == 0.0  # the tether is dsrl's start only
    assert dsrl.resolve_sac(SACConfig(actor_tether=0.3)).actor_tether == 0.3  # an explicit setting wins
    old = make_adapter(base, "dsrl", {"start": "random"}, meta["latent_stats"])
    assert old.resolve_sac(SACConfig()) == SACConfig() and old.critic_warmup == 0
    res = make_adapter(base, "action-residual", {}, meta["latent_stats"])
    assert res.resolve_sac(SACConfig()) == SACConfig() and res.critic_warmup == 0  # its own schedule instead
    with pytest.raises(UserError, match="start"):
        make_adapter(base, "zprl", {"start": "zero"}, meta["latent_stats"])
    explicit = zprl.resolve_sac(SACConfig(actor_init_std=0.5))  # an explicit setting wins over the start
    assert explicit.actor_init_std == 0.5 and explicit.actor_init_zero_mean


def test_finetune_actor_waits_for_the_critic(base_ckpt, tmp_path):
    cfg = FinetuneConfig(base=str(base_ckpt), method="zprl", env="reach-v3", env_steps=60, seed=0,
                         out=str(tmp_path / "run"), max_steps=20, warmup_decisions=10, eval_every=1000,
                         eval_episodes=1, checkpoint_every=1000, buffer_size=1000, tensorboard=False,
                         sac=SACConfig(hidden=16, batch_size=8), steering={"critic_warmup": 15},
                         final_episodes=0, sampler_noise_scale=1.0)
    tuner = Finetuner(cfg, progress=False)
    actor0 = {k: v.clone() for k, v in tuner.sac.actor.state_dict().items()}
    obs = np.zeros((1, tuner.adapter.obs_dim), np.float32)
    np.testing.assert_array_equal(tuner.sac.act(obs, deterministic=True), 0.0)  # starts as the base
    tuner.start()
    while tuner.decisions < 10 + 15:
        tuner.step()
        if tuner.decisions <= 10 + 15:  # updates so far ran with decisions < warm-up + critic warm-up
            assert all(torch.equal(v, actor0[k]) for k, v in tuner.sac.actor.state_dict().items())
    assert tuner.sac.updates > 0  # the critic learned meanwhile
    for _ in range(40):
        tuner.step()
    assert not all(torch.equal(v, actor0[k]) for k, v in tuner.sac.actor.state_dict().items())
    recorded = json.loads(json.dumps(tuner.cfg.to_dict()))
    assert recorded["sac"]["actor_init_zero_mean"] is True and recorded["sac"]["actor_init_std"] == 0.2


def test_finetune_writes_result_json_with_dip_and_both_final_modes(base_ckpt, tmp_path):
    cfg = FinetuneConfig(base=str(base_ckpt), method="zprl", env="reach-v3", env_steps=60, seed=0,
                         out=str(tmp_path / "run"), max_steps=10, warmup_decisions=5, eval_every=20,
                         eval_episodes=1, checkpoint_every=1000, buffer_size=1000, tensorboard=False, final_episodes=2,
                         shift="actuation:offset-x+0.1", sac=SACConfig(hidden=16, batch_size=8),
                         sampler_noise_scale=1.0)
    out = Finetuner(cfg, progress=False).run()
    res = json.loads((out / "result.json").read_text())
    for key in ("auc", "dip", "final_sampled", "final_eps0", "final_best", "curve"):
        assert key in res, key
    assert res["dip"] <= 0.0 and res["final_best"] == max(res["final_sampled"], res["final_eps0"])
    # the shift (canonical name) is recorded in the result, the run's config and the steered checkpoint
    assert res["final_episodes"] == 2 and res["shift"] == "actuation:offset-x+0.10"
    assert json.loads((out / "config.json").read_text())["finetune"]["shift"] == "actuation:offset-x+0.10"
    assert load_policy(out / "policy").env_spec["shift"] == "actuation:offset-x+0.10"


def test_curve_summary_dip_counts_only_after_warmup():
    from steerlab.train.results import curve_summary

    rows = [{"step": 0, "eval_success": 0.5}, {"step": 100, "eval_success": 0.1},
            {"step": 300, "eval_success": 0.3}, {"step": 400, "eval_success": 0.9}]
    s = curve_summary(rows, warmup_env_steps=200)
    assert s["dip"] == pytest.approx(-0.2) and s["lowest_after_warmup"] == pytest.approx(0.3)
    assert curve_summary(rows[:1] + rows[3:], 200)["dip"] == 0.0
    assert s["auc"] == pytest.approx(np.trapezoid([0.5, 0.1, 0.3, 0.9], [0, 100, 300, 400]) / 400)


def _linear_critic(sac, slope):
    """Replace the critic by Q(s, a) = 5 + slope·Σ a: its gradient pushes every action dim to +1 forever."""
    def critic(x, heads=None, frozen=False):
        return (5.0 + slope * x[:, -sac.act_dim:].sum(-1)).expand(sac.cfg.num_critics, -1)
    sac.critic = critic


def test_tether_holds_the_mean_action_where_the_critic_slope_pays_for_it():
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(64, 4, generator=g)}
    means = {}
    for tether in (0.0, 1.0):
        sac = SAC(4, 2, SACConfig(hidden=16, actor_lr=1e-2, actor_init_zero_mean=True, actor_tether=tether), seed=0)
        _linear_critic(sac, slope=0.5)
        for _ in range(300):
            sac._actor_update(batch)
        means[tether] = float(sac.actor.deterministic(batch["obs"]).detach().mean())
    # untethered, Adam climbs the unbounded slope to the bound; tethered, the mean settles where the slope
    # balances the pull: 0.5 = 2·β·|Q|·a / act_dim → a ≈ 0.5 / 5 = 0.1
    assert means[0.0] > 0.9
    assert 0.03 < means[1.0] < 0.2
    assert sac.actor_updates == 300


def test_tether_fades_and_its_counter_is_saved(tmp_path):
    cfg = SACConfig(hidden=16, batch_size=8, actor_tether=0.4, actor_tether_updates=10)
    sac = SAC(4, 2, cfg, seed=0)
    assert sac.tether_weight() == pytest.approx(0.4)
    sac.actor_updates = 5
    assert sac.tether_weight() == pytest.approx(0.2)
    sac.actor_updates = 12
    assert sac.tether_weight() == 0.0
    assert SAC(4, 2, SACConfig(hidden=16, actor_tether=0.4), seed=0).tether_weight() == pytest.approx(0.4)
    sac.save(tmp_path)
    again = SAC(4, 2, cfg, seed=0)
    again.load(tmp_path)
    assert again.actor_updates == 12
    with pytest.raises(ValueError, match="actor_tether"):
        SACConfig(actor_tether=-0.1)


def test_an_explicit_setting_equal_to_the_default_still_wins(base_ckpt):
    """`--sac-json '{"actor_tether": 0}'` turns DSRL's tether off although 0 is SACConfig's default."""
    meta = json.loads((base_ckpt / "config.json").read_text())
    dsrl = make_adapter(load_policy(base_ckpt), "dsrl", {}, meta["latent_stats"])
    assert dsrl.resolve_sac(SACConfig(), explicit=["actor_tether"]).actor_tether == 0.0
    assert dsrl.resolve_sac(SACConfig(), explicit=["actor_tether"]).target_entropy == 0.0  # the rest of the start stays


def test_cli_passes_the_sac_json_keys_as_explicit(base_ckpt, tmp_path, monkeypatch):
    from steerlab import cli
    from steerlab.cli import finetune

    seen = {}

    def capture(cfg, **_):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(finetune, "run_folder", capture)
    with pytest.raises(SystemExit):
        cli.main(["finetune", str(base_ckpt), "--method", "dsrl", "--out", str(tmp_path / "r"),
                  "--sac-json", '{"actor_tether": 0, "hidden": 32}'])
    assert seen["cfg"].sac_explicit == ["actor_tether", "hidden"] and seen["cfg"].sac.actor_tether == 0.0
