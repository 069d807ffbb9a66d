from pathlib import Path

from orchestration.docs import tables

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_match_the_code() -> None:
    text = README.read_text()
    for name, table in tables().items():
        assert table in text, f"README {name} table is stale: run `python -m orchestration.docs`"


def test_readme_shows_the_ci_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README.read_text()
