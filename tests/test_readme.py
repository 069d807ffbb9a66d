import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generate_tables", ROOT / "docs" / "generate_tables.py")
generate_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_tables)
doc_files, tables = generate_tables.doc_files, generate_tables.tables


def _docs() -> str:
    return "\n".join(path.read_text() for path in doc_files(ROOT))


def test_doc_tables_match_the_code() -> None:
    text = _docs()
    for name, table in tables().items():
        assert table in text, f"the docs' {name} table is stale: run `python docs/generate_tables.py`"


def test_readme_shows_the_ci_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in (ROOT / "README.md").read_text()


def test_behaviours_table_matches_the_code() -> None:
    """Every ModelBehaviour field, with Hallo's value and the default for new training."""
    import dataclasses
    import re

    from model.weights_behaviour import HALLO, ModelBehaviour

    table = _docs().split("<!-- behaviours:begin -->")[1].split("<!-- behaviours:end -->")[0]
    rows = {m[1]: (m[2], m[3]) for m in re.finditer(r"^\| `(\w+)` \| `([^`]*)` \| `([^`]*)` \|", table, re.M)}

    def shown(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    fields = [f.name for f in dataclasses.fields(ModelBehaviour)]
    assert rows == {name: (shown(getattr(HALLO, name)), shown(getattr(ModelBehaviour(), name))) for name in fields}
