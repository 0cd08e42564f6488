"""KeepInfo: the training envs report only the info keys the loop reads; nothing else changes."""

import numpy as np

from steerlab.envs.registry import make_env
from steerlab.envs.toy import ENV_ID
from steerlab.envs.wrappers import KeepInfo
from steerlab.train.finetune import train_env


def test_keep_info_passes_only_named_keys_and_changes_nothing_else():
    plain = make_env(ENV_ID, seed=0, terminate_on_success=True)
    kept = KeepInfo(make_env(ENV_ID, seed=0, terminate_on_success=True), ("is_success", "absent_key"))
    (o1, i1), (o2, i2) = plain.reset(seed=3), kept.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    assert set(i2) == {"is_success"} and len(i1) > len(i2)  # a kept key the env lacks is simply absent
    action = np.full(plain.action_space.shape, 0.5, np.float32)
    for _ in range(5):
        s1, s2 = plain.step(action), kept.step(action)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1:4] == s2[1:4] and s2[4] == {"is_success": s1[4]["is_success"]}


def test_training_env_keeps_success_and_the_position_key():
    from steerlab.envs.registry import resolve_env

    spec = resolve_env(ENV_ID)
    env = train_env(spec, seed=0, reward="dense")
    _, info = env.reset(seed=0)
    assert set(info) == {"is_success", "success_reported"} | ({spec.position_key} if spec.position_key else set())
    assert info["success_reported"]  # the toy env reports is_success: it has a success signal
    pendulum = train_env(resolve_env("Pendulum-v1"), seed=0, reward="dense")
    pendulum.reset(seed=0)
    assert not pendulum.step(np.zeros(1, np.float32))[4]["success_reported"]  # Pendulum has none
