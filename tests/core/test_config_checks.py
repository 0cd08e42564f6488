"""core.config (keys, types, counts) and core.logger's resume truncation: the pieces every command leans on."""

import math
from dataclasses import dataclass, field

import pytest

from steerlab.core.config import build, check_count
from steerlab.core.errors import UserError
from steerlab.core.logger import RunLogger, read_metrics, truncate_metrics


@dataclass
class Cfg:
    width: int = 4
    rate: float = 0.5
    name: str = "a"
    flag: bool = False
    limit: float | None = None
    extra: dict = field(default_factory=dict)


@pytest.mark.parametrize("bad,needle", [({"width": "256"}, "width must be int"), ({"width": 2.0}, "width must be int"),
                                        ({"width": True}, "width must be int"), ({"flag": 1}, "flag must be bool"),
                                        ({"rate": "0.1"}, "rate must be float"), ({"limit": "x"}, "limit must be"),
                                        ({"rate": math.nan}, "rate must be finite"), ({"extra": []}, "extra must be")])
def test_wrong_types_are_named(bad, needle):
    with pytest.raises(UserError, match=needle):
        build(Cfg, bad, "cfg")


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown cfg key\(s\) widht; valid keys: width, rate"):
        build(Cfg, {"widht": 3}, "cfg")
    assert build(Cfg, {"rate": 1, "limit": None}, "cfg") == Cfg(rate=1)  # an int is a fine float


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "3"])
def test_counts_must_be_positive_integers(value):
    with pytest.raises(UserError, match="--steps must be a positive integer"):
        check_count("--steps", value)
    check_count("--warmup", 0, minimum=0)


def test_resume_drops_rows_after_the_snapshot_and_a_torn_line(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    for step in (0, 10, 20, 30):
        log.log(step, x=step)
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "x"')  # a row torn by a kill
    log = RunLogger(tmp_path, tensorboard=False, append=True, resume_at=20)
    log.log(30, x=-1.0)
    log.close()
    assert [(r["step"], r["x"]) for r in read_metrics(tmp_path)] == [(0, 0), (10, 10), (20, 20), (30, -1)]
    assert truncate_metrics(tmp_path / "metrics.jsonl", None) == [] and read_metrics(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_dir_never_replaces_or_deletes_what_it_did_not_write(tmp_path):
    from steerlab.core.errors import OutputExistsError
    from steerlab.core.io import atomic_dir

    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "thesis.txt").write_text("important")
    neighbour = tmp_path / "snap.old"  # a user's folder that happens to carry the .old name
    neighbour.mkdir()
    (neighbour / "keep.txt").write_text("keep")
    with pytest.raises(OutputExistsError):
        with atomic_dir(mine) as tmp:
            (tmp / "x").write_text("new")
    assert (mine / "thesis.txt").read_text() == "important"
    with atomic_dir(tmp_path / "snap") as tmp:  # a new folder: the unrelated snap.old stays
        (tmp / "a").write_text("1")
    assert (neighbour / "keep.txt").read_text() == "keep"
    with atomic_dir(tmp_path / "snap", replace=True) as tmp:  # replacing its own output is allowed
        (tmp / "a").write_text("2")
    assert (tmp_path / "snap" / "a").read_text() == "2"
    assert not list(tmp_path.glob(".*.tmp"))
