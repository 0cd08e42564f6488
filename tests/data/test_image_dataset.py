"""Camera frames in datasets: collect --camera writes LeRobot image features, read back as uint8 HWC."""

import json

import numpy as np
import pyarrow.parquet as pq

from steerlab.cli import main
from steerlab.data.collect import collect_demos
from steerlab.data.dataset import read_dataset, write_dataset


def test_frames_round_trip_and_cameras_do_not_change_the_demonstrations(tmp_path):
    plain = collect_demos("push-wall-v3", 2, "mixed", seed=1, max_steps=6, progress=False)
    seen = collect_demos("push-wall-v3", 2, "mixed", seed=1, max_steps=6, progress=False,
                         cameras=["corner2", "topview"], image_size=(24, 32))
    for a, b in zip(plain, seen):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        assert a.images is None and b.images["corner2"].shape == (len(b.actions), 24, 32, 3)
    root = write_dataset(tmp_path / "ds", seen, "push-wall-v3")
    ds = read_dataset(root)
    assert set(ds.images) == {"observation.images.corner2", "observation.images.topview"}
    want = np.concatenate([e.images["topview"] for e in seen])
    np.testing.assert_array_equal(ds.images["observation.images.topview"], want)  # PNG is lossless
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.corner2"] == {
        "dtype": "image", "shape": [24, 32, 3], "names": ["height", "width", "channels"]}
    stats = json.loads((root / "meta" / "stats.json").read_text())["observation.images.corner2"]
    assert np.asarray(stats["mean"]).shape == (3, 1, 1) and 0 < np.min(stats["mean"]) < 1
    table = pq.read_table(next((root / "data").rglob("*.parquet")))
    assert table.schema.field("observation.images.corner2").type.names == ["bytes", "path"]
    assert table.column("observation.images.corner2")[0]["bytes"].as_py()[:4] == b"\x89PNG"
    hf = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["observation.images.corner2"] == {"_type": "Image"}


def test_collect_cli_refuses_bad_cameras_before_writing(tmp_path, capsys):
    out = tmp_path / "ds"
    for extra, why in ((["--camera", "a.b"], "camera names are letters"),
                       (["--camera", "corner2", "--image-size", "4", "84"], "image size must be between 8")):
        assert main(["collect", "--task", "push-wall-v3", "--episodes", "1", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1
    assert not out.exists()


def test_pretrain_on_camera_frames_gives_a_camera_policy(tmp_path):
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import make_env, resolve_env
    from steerlab.train.pretrain import PretrainConfig, pretrain

    episodes = collect_demos("push-wall-v3", 2, "expert", seed=0, max_steps=6, progress=False,
                             cameras=["corner2"], image_size=(24, 24))
    root = write_dataset(tmp_path / "ds", episodes, "push-wall-v3")
    out = pretrain(PretrainConfig(dataset=str(root), out=str(tmp_path / "p"), steps=3, batch_size=4, device="auto",
                                  policy={"hidden": 32, "embed_dim": 16, "vib_hidden": 16}), progress=False)
    policy = load_policy(out)
    assert policy.config.cameras == ["corner2"] and policy.config.image_size == [24, 24]
    assert next(policy.parameters()).device.type == "cpu"  # saved from, and loaded onto, the CPU
    meta = json.loads((out / "config.json").read_text())
    assert meta["latent_stats"]["mu_rms"] > 0
    env = make_env(resolve_env("push-wall-v3", max_steps=3, kwargs={"cameras": ["corner2"], "image_size": [24, 24]}))
    try:
        obs, _ = env.reset(seed=0)
        assert policy.select_action(obs).shape == (4,)
    finally:
        env.close()
