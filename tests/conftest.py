import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fixture_media(tmp_path_factory) -> list:
    """Every fixture variant (real faces + real speech, and broken inputs), generated once per session."""
    from curation import fixtures

    return fixtures.generate_all(tmp_path_factory.mktemp("fixture_media"))


@pytest.fixture(scope="session")
def fixture_by_variant(fixture_media) -> dict:
    return {info.variant: info for info in fixture_media}
