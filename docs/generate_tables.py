"""`python docs/generate_tables.py`: regenerate the reason and config tables in README.md and docs/*.md (curation,
training, latent cache, generation) from the code. A maintainer's tool: it lives with the pages it writes, not in
a library package."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from curation.config import CurationConfig
from curation.reasons import FAILED, REASONS
from foundation.config import describe_markdown
from model.generate_config import GenerateConfig
from training.config import LatentCacheConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def reasons_markdown() -> str:
    rows = [f"| `{code}` | {'failed' if code in FAILED else 'rejected'} | {text} |" for code, text in REASONS.items()]
    return "\n".join(["| reason | status | meaning |", "|---|---|---|", *rows])


def tables() -> dict[str, str]:
    return {"reasons": reasons_markdown(), "config": describe_markdown(CurationConfig),
            "training-config": describe_markdown(TrainConfig), "latent-cache-config": describe_markdown(LatentCacheConfig),
            "generate-config": describe_markdown(GenerateConfig)}


def doc_files(root: Path = ROOT) -> list[Path]:
    """Every page the tables may live in."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def fill(text: str) -> str:
    for name, table in tables().items():
        text = re.sub(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->",
                      lambda _: f"<!-- {name}:begin -->\n{table}\n<!-- {name}:end -->", text, flags=re.S)
    return text


if __name__ == "__main__":
    for path in [Path(p) for p in sys.argv[1:]] or doc_files():
        path.write_text(fill(path.read_text()))
