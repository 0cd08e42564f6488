"""Return as a first-class metric, strict JSON with a `nulls` map, and the regression verdict (issue 23, 1-2)."""

import json
import math

import numpy as np
import pytest

from steerlab.core.io import atomic_write_json, dumps_strict, strict_json
from steerlab.core.logger import RunLogger, read_metrics
from steerlab.eval.metrics import mean_interval, t975
from steerlab.train.finetune.loop import warn_if_regressed
from steerlab.train.results import curve_summary, regression_verdict, row_verdict


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_strict_json_turns_non_finite_into_null_with_a_reason(tmp_path):
    obj = {"a": float("nan"), "b": {"c": float("inf")}, "d": [1.0, float("-inf")], "e": np.float32(2.5),
           "ok": 1, "nulls": {"a": "not measured here"}}
    out = strict_json(obj)
    assert out["a"] is None and out["b"]["c"] is None and out["d"] == [1.0, None] and out["e"] == 2.5
    assert out["nulls"] == {"a": "not measured here", "b.c": "not a finite number (inf)",
                            "d[1]": "not a finite number (-inf)"}
    atomic_write_json(tmp_path / "x.json", obj)
    assert strict_loads((tmp_path / "x.json").read_text()) == out
    assert "NaN" not in dumps_strict({"x": float("nan")})
    assert "nulls" not in strict_json({"x": 1.0})  # nothing null: no map


def test_metrics_rows_are_strict_and_read_back_as_nan(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log(0, nulls={"eval_success": "no success signal"}, eval_return=-100.0, eval_success=None,
               explore_jerk=float("nan"))
    logger.close()
    row = strict_loads((tmp_path / "metrics.jsonl").read_text().strip())
    assert row["eval_success"] is None and row["explore_jerk"] is None
    assert row["nulls"] == {"eval_success": "no success signal", "explore_jerk": "not a finite number (nan)"}
    back = read_metrics(tmp_path)[0]
    assert math.isnan(back["eval_success"]) and back["eval_return"] == -100.0


def test_t_interval():
    assert t975(1) == 12.706 and abs(t975(60) - 2.0003) < 1e-3 and abs(t975(1000) - 1.9623) < 1e-3
    m = mean_interval([1.0, 2.0, 3.0])
    assert m["mean"] == 2.0 and np.allclose(m["ci95"], [2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)])
    assert mean_interval([5.0])["ci95"] is None


def test_regression_verdict_fires_beyond_noise_only():
    worse = regression_verdict("return", base=-108.0, base_se=10.0, final=-703.0, final_se=40.0)
    assert worse["verdict"] == "regressed" and worse["margin"] == pytest.approx(1.959964 * math.sqrt(1700))
    assert regression_verdict("return", -108.0, 10.0, -108.0, 10.0)["verdict"] == "within noise"
    assert regression_verdict("return", -108.0, 10.0, -120.0, 10.0)["verdict"] == "within noise"  # 12 < 27.7
    assert regression_verdict("return", -108.0, 10.0, -20.0, 10.0)["verdict"] == "improved"
    # success: 0.9 -> 0.2 over 20 episodes each is a regression; 0.5 -> 0.45 is noise
    base = {"eval_success": 0.9, "eval_episodes": 20, "eval_return": 1.0}
    assert row_verdict(base, {"eval_success": 0.2, "eval_episodes": 20})["verdict"] == "regressed"
    assert row_verdict({"eval_success": 0.5, "eval_episodes": 20},
                       {"eval_success": 0.45, "eval_episodes": 20})["verdict"] == "within noise"
    # an env without success (NaN read back from null) is judged on return
    rows = [{"step": 0, "eval_success": math.nan, "eval_return": -108.0, "eval_return_se": 5.0, "eval_length": 200},
            {"step": 5000, "eval_success": math.nan, "eval_return": -703.0, "eval_return_se": 30.0,
             "eval_length": 200}]
    s = curve_summary(rows)
    assert s["regressed"]["metric"] == "return" and s["regressed"]["verdict"] == "regressed"
    assert s["auc"] is None and "never reported success" in s["nulls"]["auc"]
    assert s["auc_return"] == pytest.approx((-108.0 - 703.0) / 2) and s["start_return"] == -108.0
    assert row_verdict(rows[0], rows[0])["verdict"] == "within noise"


def test_regression_warning_on_stderr(tmp_path, capsys):
    warn_if_regressed(regression_verdict("return", -108.0, 10.0, -703.0, 40.0), tmp_path)
    err = capsys.readouterr().err
    assert "WARNING: the steered policy ends below the base: return -703 vs the base's -108" in err
    warn_if_regressed(regression_verdict("return", -108.0, 10.0, -108.0, 10.0), tmp_path)
    assert capsys.readouterr().err == ""
