"""`hallo-weights fetch` and SyncNet's weights: LatentSync's repositories as listed at fetch time,
then syncnet_python's address; only a file that loads as SyncNet takes its place. The hub is
replaced by a recording stand-in and the address by a server on 127.0.0.1 (no internet here)."""
from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import pytest
import torch

from foundation.syncnet import SyncNet, load_syncnet
from model.pretrained import base_paths
from model.syncnet_weights import LATENTSYNC_REPOS, fetch_syncnet, find_in_listing

LATENTSYNC_FILES = ["README.md", "latentsync_unet.pt", "whisper/tiny.pt", "auxiliary/sfd_face.pth",
                    "auxiliary/syncnet_v2.model", "auxiliary/vgg16-397923af.pth"]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("released") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)
    return path


class FakeHub:
    """Repositories by name: a file list, or an exception its listing raises."""

    def __init__(self, repos: dict, weights: Path) -> None:
        self.repos, self.weights, self.listed, self.downloaded = repos, weights, [], []

    def install(self, monkeypatch) -> None:
        hub = self
        monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda api, repo, **kw: hub.list(repo))
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)

    def list(self, repo: str) -> list[str]:
        self.listed.append(repo)
        entry = self.repos.get(repo, ConnectionError(f"{repo}: no such repository"))
        if isinstance(entry, Exception):
            raise entry
        return entry

    def download(self, repo: str, filename: str, local_dir: str) -> str:
        self.downloaded.append((repo, filename))
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.weights, target)
        return str(target)


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def _leftovers(base: Path) -> list[str]:
    return sorted(p.name for p in base.rglob("*") if p.name.startswith(".fetch-"))


def test_the_file_is_found_in_a_listing_wherever_it_moved():
    assert find_in_listing(LATENTSYNC_FILES) == "auxiliary/syncnet_v2.model"
    assert find_in_listing(["checkpoints/auxiliary/syncnet_v2.model", "syncnet_v2.model.bak"]) == \
        "checkpoints/auxiliary/syncnet_v2.model"
    assert find_in_listing(["latentsync_unet.pt", "auxiliary/sfd_face.pth"]) is None


def test_fetch_takes_the_first_latentsync_repository_that_lists_it(weights_file, tmp_path, monkeypatch):
    first, second, third = LATENTSYNC_REPOS
    hub = FakeHub({first: ConnectionError("offline"), second: ["latentsync_unet.pt"], third: LATENTSYNC_FILES},
                  weights_file)
    hub.install(monkeypatch)
    dest = base_paths(tmp_path)["syncnet"]
    assert dest == tmp_path / "syncnet" / "syncnet_v2.model"
    fetch_syncnet(dest, url="http://127.0.0.1:9/never-asked")
    assert hub.listed == [first, second, third] and hub.downloaded == [(third, "auxiliary/syncnet_v2.model")]
    expected = torch.load(weights_file, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in load_syncnet(dest).state_dict().items())
    assert _leftovers(tmp_path) == []
    fetch_syncnet(dest)  # already there: nothing is asked of anyone
    assert hub.listed == [first, second, third]


def test_fetch_falls_back_to_syncnet_pythons_address(weights_file, served, tmp_path, monkeypatch):
    folder, url = served
    shutil.copy(weights_file, folder / "syncnet_v2.model")
    hub = FakeHub({repo: ["README.md"] for repo in LATENTSYNC_REPOS}, weights_file)
    hub.install(monkeypatch)
    dest = tmp_path / "base" / "syncnet" / "syncnet_v2.model"
    fetch_syncnet(dest, url=f"{url}/syncnet_v2.model")
    assert hub.listed == list(LATENTSYNC_REPOS) and hub.downloaded == []
    load_syncnet(dest)


def test_what_does_not_load_as_syncnet_never_takes_its_place(weights_file, served, tmp_path, monkeypatch):
    folder, url = served
    (folder / "error.html").write_text("<html>Service moved</html>")
    FakeHub({}, weights_file).install(monkeypatch)
    dest = tmp_path / "base" / "syncnet" / "syncnet_v2.model"
    with pytest.raises(RuntimeError, match="could not fetch syncnet_v2.model.*not a syncnet_python SyncNet state dict"):
        fetch_syncnet(dest, url=f"{url}/error.html")
    with pytest.raises(RuntimeError, match="404"):
        fetch_syncnet(dest, url=f"{url}/missing.model")
    assert not dest.exists() and _leftovers(tmp_path) == []
