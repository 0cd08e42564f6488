"""tests/ mirrors src/steerlab/: every package of the source has its test folder."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_has_a_test_folder():
    packages = {p.name for p in (ROOT / "src" / "steerlab").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    missing = sorted(p for p in packages if not any((ROOT / "tests" / p).glob("test_*.py")))
    assert not missing, f"no tests/<package>/test_*.py for {missing}"
