"""The README's generated lines on the held-out checks: silent until there is something to count, partial runs
named as partial."""

from steerlab.bench import headlines as hl


def _res(seeds_done: list[int], planned: int) -> dict:
    counts = {"tasks": len(seeds_done), "auc_ge_dsrl": 1, "final_best_ge_dsrl": 2, "above_base": 2,
              "above_base_interval_clear": 1, "dip_ge_dsrl": 1, "dip_below_-0.10": ["a-v3"]}
    rows = {f"t{i}-v3": {"zprl_rule": {"seeds": s}, "zprl_tether": {"seeds": s}, "dsrl_grid": {"seeds": planned}}
            for i, s in enumerate(seeds_done)}
    complete = all(s >= planned for s in seeds_done)
    return {"counts": counts, "complete": complete, "tasks": rows,
            "tether": {"beta": 0.1, "counts": {**counts, "complete": complete}}}


def test_nothing_to_count_gives_no_line():
    assert hl.holdout_line(None) == "" and hl.tether_line(None) == ""
    empty = _res([], 3)
    assert hl.holdout_line(empty) == "" and hl.tether_line(empty) == ""


def test_lines_count_and_say_when_they_are_partial():
    done, partial = _res([3, 3], 3), _res([1, 2], 3)
    line = hl.tether_line(done)
    assert "β = 0.1" in line and "AUC ≥ DSRL's on 1/2" in line and "below −0.10 on 1" in line
    assert "partial" not in line and "partial" not in hl.holdout_line(done)
    assert "partial: 1–2–3 seeds" in hl.tether_line(partial)
    assert "partial: 1–2–3 seeds" in hl.holdout_line(partial)
