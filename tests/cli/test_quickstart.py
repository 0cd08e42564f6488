"""`steerlab quickstart`: every stage on a budget of seconds (`--tiny`): one table with every row, one figure, strict
JSON, the user's key file private, the sealed release opened by the user's key only."""

import json
import stat

import pytest

from steerlab.bench.quickstart_report import LABELS, ROWS
from steerlab.cli import main


def _strict(text):
    def refuse(const):
        raise ValueError(f"non-strict JSON constant {const}")

    return json.loads(text, parse_constant=refuse)


def test_tiny_quickstart_prints_every_row_and_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(ROWS)  # the header and one line per policy
    for name in ROWS:
        assert sum(line.startswith(f"| {LABELS[name]} (") for line in table) == 1, name
    assert "success, sampled" in table[0] and "success, ε = 0" in table[0] and "user's goal" in table[0]
    assert (out / "quickstart.png").stat().st_size > 10_000
    summary = _strict((out / "quickstart.json").read_text())
    rows = summary["rows"]
    assert set(rows) == set(ROWS)
    for name in ROWS:
        for mode in ("sampled", "eps0"):
            r = rows[name][mode]
            assert 0 <= r["ci95"][0] <= r["success"] <= r["ci95"][1] <= 1 and r["episodes"] == 2
    assert "user_eps0" not in rows["zprl"] and all("user_eps0" in rows[n] for n in ROWS if n != "zprl")
    assert rows["right_key"]["opened"] and not rows["wrong_key"]["opened"] and not rows["no_key"]["opened"]
    assert [p["step"] for p in summary["curve"]][0] == 0 and len(summary["curve"]) >= 2  # the learning curve
    for key in ("user.key", "wrong.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    # the release holds the public base and one sealed part; what is personal lies beside it, private
    assert (out / "personalized" / "sealed" / "user0.sealed").is_file()
    assert stat.S_IMODE((out / "personalized.private").stat().st_mode) == 0o700
    assert "goal_offset" not in (out / "personalized" / "config.json").read_text()
    # what `steerlab bench quickstart_seeds` keeps of a run, and its verdicts over seeds: strict JSON
    from steerlab.bench.quickstart_seeds import seed_record, verdicts

    record = seed_record(summary)
    summary_of_seeds = verdicts([record, record])
    json.dumps({"seeds": [record], "summary": summary_of_seeds}, allow_nan=False)
    assert summary_of_seeds["eps0"]["seeds"] == 2 and summary_of_seeds["sealed"]["right_key_opened"] == 2
    assert summary_of_seeds["sealed"]["wrong_or_no_key_opened"] == 0
    # README's table of the seeds: one line per seed, the gain with its margin and verdict
    from steerlab.bench.quickstart_seeds import table

    lines = table({"config": summary["config"], "seeds": [record, record], "summary": summary_of_seeds,
                   "machine": {"cpus": 2}}).splitlines()
    assert sum(line.startswith("| 0 |") for line in lines) == 2
    assert record["gain"][record["trained_mode"]]["verdict"] in lines[2]
    # the base's demonstrator aimed beside the goal, and its dataset says so
    meta = _strict((out / "datasets" / "demos" / "meta" / "steerlab.json").read_text())
    assert meta["demonstrator_aim_offset"] == summary["config"]["demo_offset"] != summary["config"]["goal_offset"]


def test_bad_input_is_one_line_and_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--task", "no-such-task-v3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--task" in err[0] and "no-such-task-v3" in err[0]
    assert main(["quickstart", "--env-steps", "0", "--out", str(out)]) == 2
    assert "--env-steps" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_of_something_else_is_refused(tmp_path, capsys):
    out = tmp_path / "qs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["quickstart", "--tiny", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv", [["--qualities", "noisy"], ["--quality", "noisy"]])
def test_quality_keeps_its_old_spelling(argv):
    from steerlab.cli import build_parser

    args = build_parser("quickstart").parse_args(["quickstart", *argv])
    assert args.quality == "noisy"


def test_demo_offset_option_defaults_to_the_config_and_zero_means_none(tmp_path):
    from steerlab.bench.quickstart import QuickstartConfig
    from steerlab.cli import build_parser

    parser = build_parser("quickstart")
    assert parser.parse_args(["quickstart"]).demo_offset == QuickstartConfig().demo_offset
    assert parser.parse_args(["quickstart", "--demo-offset", "0", "0.05", "0"]).demo_offset == [0.0, 0.05, 0.0]


def test_quickstart_seeds_redoes_only_its_own_older_runs(tmp_path):
    """A seed folder holding only record files (what `steerlab bench` extracted from the benchmark's archive) is an
    older run of the benchmark; one holding anything else is not (it is never removed)."""
    from steerlab.bench.quickstart_seeds import ours

    folder = tmp_path / "seed0"
    assert not ours(folder)
    (folder / "zprl").mkdir(parents=True)
    assert not ours(folder)  # empty
    (folder / "zprl" / "metrics.jsonl").write_text("{}\n")
    (folder / "quickstart.json").write_text("{}")
    assert ours(folder)
    (folder / "notes.txt").write_text("mine")
    assert not ours(folder)
