"""The README's throughput rows come from benchmarks/results/throughput.json, never typed."""


from steerlab.bench import throughput


def test_table_reports_rates_and_ratios():
    loops = [{"n_envs": 1, "async": False, "cpu_env_steps_per_s": 80.0, "ratio_cpu": 0.5, "wall_env_steps_per_s": 40.0,
              "ratio_wall": 0.45, "worker_cpu_ms_per_env_step": 0.0, "update_cpu_ms": 12.0},
             {"n_envs": 8, "async": True, "cpu_env_steps_per_s": 130.0, "ratio_cpu": 0.81,
              "wall_env_steps_per_s": 60.0, "ratio_wall": 0.7, "worker_cpu_ms_per_env_step": 2.25,
              "update_cpu_ms": 13.0}]
    res = {"task": "push-wall-v3", "method": "zprl", "utd": 1.0, "n_action_steps": 2, "sim": {"cpu_steps_per_s": 600.0},
           "update": {"cpu_s": 0.0125, "wall_s": 0.02}, "update_bound_cpu_env_steps_per_s": 160.0,
           "update_bound_wall_env_steps_per_s": 100.0, "target_ratio": 0.8, "loadavg_start": [3.0], "cpus": 2,
           "loops": loops}
    table = throughput.table(res)
    assert "updates training" not in table  # a record without the field does not say which updates it timed
    assert "updates training the critic and actor" in throughput.table({**res, "update_phase": "critic and actor"})
    assert "SAC update alone: 12.5 CPU-ms (20.0 ms wall)" in table and "160 env steps per CPU-second" in table
    assert "| 1 | sync (one core) | 80 (0.50) | 40 (0.45) | 0.50 | 12.0 | — |" in table
    assert "| 8 | async (learner core) | 130 (0.81) | 60 (0.70) | 0.81 | 13.0 | 2.25 |" in table


def test_table_names_how_the_machine_was_kept_quiet():
    res = {"task": "t", "method": "zprl", "utd": 1.0, "n_action_steps": 2, "sim": {"cpu_steps_per_s": 600.0},
           "update": {"cpu_s": 0.01, "wall_s": 0.01}, "update_bound_cpu_env_steps_per_s": 200.0, "target_ratio": 0.8,
           "loadavg_start": [3.0], "cpus": 2, "conditions": "other jobs paused",
           "loops": [{"n_envs": 1, "async": False, "cpu_env_steps_per_s": 50.0, "ratio_cpu": 0.6,
                      "wall_env_steps_per_s": 50.0, "ratio_wall": 0.6, "worker_cpu_ms_per_env_step": 0.0,
                      "update_cpu_ms": 12.0}]}
    table = throughput.table(res)
    assert "(other jobs paused)" in table
    # the rate against the standalone update's bound is its own column: 50 / 200
    assert "| 1 | sync (one core) | 50 (0.60) | 50 (0.60) | 0.25 | 12.0 | — |" in table
