"""`python -m orchestration.docs`: regenerate the README's reason and config tables (curation, training, latent cache,
generation) from the code."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from curation.config import CurationConfig
from curation.reasons import FAILED, REASONS
from foundation.config import describe_markdown
from model.generate_config import GenerateConfig
from training.config import LatentCacheConfig, TrainConfig


def reasons_markdown() -> str:
    rows = [f"| `{code}` | {'failed' if code in FAILED else 'rejected'} | {text} |" for code, text in REASONS.items()]
    return "\n".join(["| reason | status | meaning |", "|---|---|---|", *rows])


def tables() -> dict[str, str]:
    return {"reasons": reasons_markdown(), "config": describe_markdown(CurationConfig),
            "training-config": describe_markdown(TrainConfig), "latent-cache-config": describe_markdown(LatentCacheConfig),
            "generate-config": describe_markdown(GenerateConfig)}


def fill(readme: str) -> str:
    for name, table in tables().items():
        readme = re.sub(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->",
                        lambda _: f"<!-- {name}:begin -->\n{table}\n<!-- {name}:end -->", readme, flags=re.S)
    return readme


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(fill(path.read_text()))
