"""Bring your own policy and preference: your `steerlab pretrain` policy, your demos, from the CLI."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_POLICY, make_episodes
from torch import nn

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.data.dataset import Episode, read_dataset, write_dataset
from steerlab.privacy.key_cases import evaluate_key_cases
from steerlab.privacy.keys import UserKey, load_key_file
from steerlab.privacy.methods import PersonalizeConfig, build_personalized
from steerlab.privacy.tasks.byo import DatasetTask


def _shifted(episodes, shift=0.5):
    """The user's own preference: the same states, actions moved by a constant."""
    return [Episode(e.observations, np.clip(e.actions + shift, -1, 1).astype(np.float32), e.rewards, e.success)
            for e in episodes]


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """collect → pretrain → collect own demos (goal offset) → keygen: what a user has before personalizing."""
    root = tmp_path_factory.mktemp("byo")
    general, personal, base, key = root / "general", root / "alice_demos", root / "base", root / "alice.key"
    assert main(["collect", "--task", "reach-v3", "--episodes", "3", "--quality", "expert", "--max-steps", "30",
                 "--out", str(general)]) == 0
    assert main(["collect", "--task", "reach-v3", "--episodes", "3", "--quality", "expert", "--max-steps", "30",
                 "--goal-offset", "0.08", "0", "0", "--seed", "1", "--out", str(personal)]) == 0
    assert main(["pretrain", "--dataset", str(general), "--out", str(base), "--steps", "30", "--batch-size", "16",
                 "--no-vib", "--policy-json", json.dumps(TINY_POLICY)]) == 0
    assert main(["keygen", "--out", str(key)]) == 0
    return root


@pytest.mark.parametrize("method", ["sealed", "prop"])
def test_personalize_own_pretrained_policy_from_own_demos_end_to_end(user_run, tmp_path, capsys, method):
    r = user_run
    out = tmp_path / "rel"
    assert main(["personalize", "--base", str(r / "base"), "--personal", str(r / "alice_demos"), "--keys",
                 str(r / "alice.key"), "--method", method, "--steps", "40", "--holdout", "0", "--out", str(out)]) == 0
    assert "steerlab evaluate" in capsys.readouterr().out
    assert read_dataset(r / "alice_demos").info["steerlab"]["goal_offset"] == pytest.approx([0.08, 0, 0])
    assert not (out / "cases.json").exists() and not (out / "metrics.jsonl").exists()  # personal: not released
    cases = json.loads((tmp_path / "rel.private" / "cases.json").read_text())["cases"]
    # scored on the user's own demos (holdout 0: the training frames): the key's policy imitates them better
    assert cases["correct"]["personal"] > cases["no_key"]["personal"]
    key = load_key_file(r / "alice.key")
    base, personal, plain = load_policy(r / "base"), load_policy(out, key=key), load_policy(out)
    obs = read_dataset(r / "alice_demos").observations[:8]
    zero = torch.zeros(8, *base.chunk_shape)
    a_base, a_pers = base.predict_chunk(obs, noise=zero), personal.predict_chunk(obs, noise=zero)
    assert not np.allclose(a_base, a_pers)
    if method == "sealed":  # without the key: the user's base, bit for bit
        assert np.array_equal(plain.predict_chunk(obs, noise=zero), a_base)
        assert (out / "model.safetensors").read_bytes() == (r / "base" / "model.safetensors").read_bytes()
    # the one evaluate command runs the personal policy with --key, the no-key policy without
    for extra in ([], ["--key", str(r / "alice.key")]):
        assert main(["evaluate", str(out), "--episodes", "1", "--n-envs", "1", "--max-steps", "5", *extra]) == 0
    evals = out.parent / "rel.evals"  # beside the release, never inside it
    assert (evals / f"eval_reach-v3_seed0_ep1_noise1_max5_key{key.fingerprint()}.json").is_file()
    assert (evals / "eval_reach-v3_seed0_ep1_noise1_max5.json").is_file()
    for f in [*out.rglob("*"), *evals.rglob("*")]:
        if f.is_file():
            assert key.raw not in f.read_bytes() and key.raw.hex().encode() not in f.read_bytes(), f


def test_personalize_out_never_replaces_or_writes_into_what_it_did_not_write(user_run, tmp_path, capsys):
    r = user_run
    args = ["personalize", "--base", str(r / "base"), "--personal", str(r / "alice_demos"), "--keys",
            str(r / "alice.key"), "--method", "sealed", "--steps", "5"]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("important")
    assert main([*args, "--out", str(victim)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert (victim / "thesis.txt").read_text() == "important"
    assert main([*args, "--out", str(victim), "--overwrite"]) == 0  # the old folder is moved aside, not deleted
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("victim.replaced-")]
    assert len(aside) == 1 and (aside[0] / "thesis.txt").read_text() == "important"
    assert main([*args, "--out", str(r / "base" / "sub")]) == 2  # never into its own input
    assert "own input" in capsys.readouterr().err
    assert main([*args, "--out", str(r / "alice_key_dir"), "--personal", str(r / "alice_demos"),
                 str(r / "alice_demos")]) == 2  # one personal dataset per key
    assert "one --personal dataset per key" in capsys.readouterr().err


def test_dataset_that_does_not_fit_the_policy_is_one_line_error(user_run, tmp_path):
    r = user_run
    from steerlab.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="takes no key"):  # a plain policy has no personal part to select
        load_policy(r / "base", key=load_key_file(r / "alice.key"))
    wrong = write_dataset(tmp_path / "wrong", make_episodes(n=2, obs_dim=7), "reach-v3")
    with pytest.raises(UserError, match="does not fit the policy"):
        DatasetTask(load_policy(r / "base"), read_dataset(r / "general"), [read_dataset(wrong)])
    with pytest.raises(UserError, match="needs each user's goal"):
        DatasetTask(load_policy(r / "base"), read_dataset(r / "general"), [read_dataset(r / "general")], score="env",
                    env_task="reach-v3")


def test_personalize_scored_by_env_success_with_the_users_recorded_goal(user_run, tmp_path):
    r = user_run
    out = tmp_path / "rel"
    assert main(["personalize", "--base", str(r / "base"), "--personal", str(r / "alice_demos"), "--keys",
                 str(r / "alice.key"), "--method", "sealed", "--steps", "5", "--score", "env", "--out", str(out)]) == 0
    result = json.loads((tmp_path / "rel.private" / "cases.json").read_text())
    options = result["config"]["task"]["datasets"]["options"]
    assert options["env_task"] == "reach-v3" and options["score"] == "env"
    for d in result["cases"].values():  # success rates of rollouts
        assert 0.0 <= d["general"] <= 1.0 and 0.0 <= d["personal"] <= 1.0


class LinearChunkPolicy(nn.Module):
    """A user's own policy that is no steerlab class: it only speaks the imitation protocol."""

    def __init__(self, obs_dim=39, act_dim=4, horizon=1):
        super().__init__()
        self.chunk_shape = (horizon, act_dim)
        self.net = nn.Sequential(nn.Linear(obs_dim, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                                 nn.Linear(32, horizon * act_dim))

    def forward(self, obs):
        return self.net(torch.as_tensor(obs, dtype=torch.float32)).reshape(-1, *self.chunk_shape)

    def compute_loss(self, obs, chunk):
        return (self(obs) - chunk).pow(2).mean()

    def predict_chunk(self, obs, *, noise=None):
        return self(obs).detach().numpy()


@pytest.mark.parametrize("method", ["sealed", "prop", "finetune"])
def test_protocol_policy_personalizes_with_every_scorer_free_method(tmp_path, method):
    torch.manual_seed(0)
    general = read_dataset(write_dataset(tmp_path / "g", make_episodes(n=6), "push-wall-v3"))
    personal = read_dataset(write_dataset(tmp_path / "p", _shifted(make_episodes(n=6, seed=1)), "push-wall-v3"))
    base = LinearChunkPolicy()
    task = DatasetTask(base, general, [personal], holdout=0.34)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(base.parameters(), lr=3e-3)
    for _ in range(300):  # the user's own pretraining
        loss = task.loss(base, *task.general_batch(64, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    task = DatasetTask(base.eval(), general, [personal], holdout=0.34)
    user = UserKey(bytes(range(16)))
    p = build_personalized(method, task, task.train_base(0), [user], PersonalizeConfig(steps=300, lr=3e-3))
    cases = evaluate_key_cases(p, task, seed=0, n_keys=2)
    # held-out personal demos: the user's key gives their preference, other keys (not finetune) the general one
    assert cases["correct"]["personal"] > 0.3
    if method != "finetune":
        assert cases["random"]["general"] > cases["random"]["personal"]
        assert cases["no_key"]["general"] > cases["no_key"]["personal"]


def test_anchor_targets_of_a_flow_policy_are_chunks_sampled_from_the_anchor(user_run):
    """PRoP's anchor loss takes the base's behaviour as labels: for a generative policy those are action
    chunks drawn from it (the loss's own label shape), not its single zero-noise action."""
    r = user_run
    base = load_policy(r / "base")
    task = DatasetTask(base, read_dataset(r / "general"), [read_dataset(r / "alice_demos")], holdout=0)
    x, y = task.personal_batch(0, 16, torch.Generator().manual_seed(0))
    a, b = (task.anchor_targets(base, x, torch.Generator().manual_seed(s)) for s in (1, 2))
    assert a.shape == y.shape and a.dtype == y.dtype and torch.isfinite(a).all()
    assert not torch.equal(a, b)  # sampled: different noise, different chunks
    assert torch.equal(a, task.anchor_targets(base, x, torch.Generator().manual_seed(1)))  # seeded
    assert torch.isfinite(task.loss(base, x, a))


# ----------------------------------------------------------------------------- issue 24: nothing personal in a release
def _encodings(value) -> set[bytes]:
    """Ways a value could sit in a file: text in utf-8 / utf-16 / JSON escapes, floats as text and binary."""
    import struct

    texts = {str(value), repr(value), json.dumps(value)}
    if isinstance(value, float):
        texts |= {f"{value:g}", f"{value:.4f}", json.dumps(value)}
    out = {e for t in texts for e in (t.encode(), t.encode("utf-16-le"), t.encode("utf-16-be"),
                                       json.dumps(t)[1:-1].encode(), json.dumps(t, ensure_ascii=True)[1:-1].encode())}
    if isinstance(value, float):
        out |= {struct.pack("<d", value), struct.pack(">d", value), struct.pack("<f", value)}
    return out


def test_sealed_release_holds_no_personal_value_or_path(user_run, tmp_path, monkeypatch):
    from steerlab.privacy.release import open_sealed
    from steerlab.privacy.sealed.blobs import unseal

    r = user_run
    offset = [0.0731, -0.0412, 0.0219]  # distinctive: a chance match in weight bytes is out of the question
    monkeypatch.chdir(r)
    out = tmp_path / "rel"
    assert main(["personalize", "--base", str(r / "base"), "--personal", "alice_demos", "--keys", "alice.key",
                 "--goal-offset", *map(str, offset), "--steps", "5", "--holdout", "0", "--out", str(out)]) == 0
    personal_path = str((r / "alice_demos").resolve())
    needles = {"alice_demos", "alice", personal_path, str(r / "alice_demos"), *offset}
    scores = json.loads((tmp_path / "rel.private" / "cases.json").read_text())["cases"]
    needles |= {scores["correct"]["personal"]}  # a per-user score
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"config.json", "model.safetensors", "user0.sealed"}
    for f in files:
        data = f.read_bytes()
        for needle in needles:
            for enc in _encodings(needle):
                assert enc not in data, f"{f.relative_to(out)} holds {needle!r} ({enc!r})"
    # the scan can see them: they are in the private report beside the release, and inside the user's blob
    private = (tmp_path / "rel.private" / "task.json").read_bytes()
    assert personal_path.encode() in private and b"0.0731" in private
    assert (tmp_path / "rel.private").stat().st_mode & 0o077 == 0
    release, _ = open_sealed(out)
    _, personal, _ = unseal(release.blobs[0], load_key_file("alice.key"), release.binding, 0)
    assert personal == {"personal_dataset": personal_path, "goal_offset": offset}


def _evaluate(out, *extra):
    return main(["evaluate", str(out), "--episodes", "1", "--n-envs", "1", "--max-steps", "5", *extra])


def test_evaluate_key_says_what_ran_opened_wrong_key_damaged_and_strict(user_run, tmp_path, capsys):
    r = user_run
    out, other = tmp_path / "rel", tmp_path / "other.key"
    assert main(["personalize", "--base", str(r / "base"), "--personal", str(r / "alice_demos"), "--keys",
                 str(r / "alice.key"), "--steps", "5", "--holdout", "0", "--out", str(out)]) == 0  # sealed: the default
    assert main(["keygen", "--out", str(other)]) == 0
    evals = tmp_path / "rel.evals"
    capsys.readouterr()
    assert _evaluate(out, "--key", str(r / "alice.key")) == 0
    fp = load_key_file(r / "alice.key").fingerprint()
    opened = json.loads((evals / f"eval_reach-v3_seed0_ep1_noise1_max5_key{fp}.json").read_text())
    assert opened["personal_opened"] is True and opened["personal_slot"] == 0
    assert "personal policy (sealed blob 0)" in capsys.readouterr().out
    assert _evaluate(out, "--key", str(other)) == 0  # a wrong key: runs the base, and says so
    wrong = json.loads(next(evals.glob("*_base.json")).read_text())
    assert wrong["personal_opened"] is False and wrong["personal_reason"] == "no blob opened with this key"
    assert "PUBLIC BASE ran: no blob opened with this key" in capsys.readouterr().out
    assert _evaluate(out, "--key", str(other), "--strict", "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert "no blob opened with this key" in err.splitlines()[-1] and "Traceback" not in err
    blob = out / "sealed" / "user0.sealed"
    blob.write_bytes(blob.read_bytes()[:100])  # the user's own blob damaged: not the same as a wrong key
    assert _evaluate(out, "--key", str(r / "alice.key"), "--out", str(tmp_path / "damaged.json")) == 0
    damaged = json.loads((tmp_path / "damaged.json").read_text())
    assert damaged["personal_opened"] is False and "blob 0 damaged" in damaged["personal_reason"]
    assert "PUBLIC BASE ran" in capsys.readouterr().out
    assert _evaluate(out, "--key", str(r / "alice.key"), "--strict", "--out", str(tmp_path / "s.json")) == 2
    assert "blob 0 damaged" in capsys.readouterr().err
