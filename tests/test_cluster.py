"""The cluster: cluster.yaml against Ray's own launcher validation, and curation on a real two-node Ray
cluster that loses a node in the middle of the run."""
import copy
import io
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import jsonschema
import pyarrow.parquet as pq
import pytest
import yaml
from localcluster import LocalCluster, cluster_env, wait_until
from ray.autoscaler._private.util import prepare_config, validate_config

from curation.config import CurationConfig
from curation.sources import parse_source
from foundation.config import ConfigError, load_config
from foundation.storage import expand_shards
from training.data import shard_samples
from orchestration.curation_job import SourceQueue, domain_of

ROOT = Path(__file__).resolve().parents[1]


def load_cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def validated(config: dict) -> dict:
    """What `ray up` checks before it starts anything (schema and logic; node_config is the cloud's)."""
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def test_cluster_yaml_passes_rays_launcher_validation() -> None:
    config = validated(load_cluster_yaml())
    types = config["available_node_types"]
    assert config["provider"]["type"] == "aws"
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # the head only runs drivers
    assert "curation" in types["cpu_curation"]["resources"]  # what run.resources={curation: 1} pins to
    assert types["gpu_train"]["max_workers"] >= 1


def _unknown_key(config: dict) -> None:
    config["max_wrokers"] = 3


def _missing_head_type(config: dict) -> None:
    config["head_node_type"] = "gpu_head"


def _min_above_max(config: dict) -> None:
    config["available_node_types"]["cpu_curation"]["min_workers"] = 5
    config["max_workers"] = 2


def _wrong_type(config: dict) -> None:
    config["available_node_types"]["gpu_train"]["max_workers"] = "two"


@pytest.mark.parametrize("breakage, message", [
    (_unknown_key, "'max_wrokers' was unexpected"),
    (_missing_head_type, "`head_node_type` must be one of `available_node_types`"),
    (_min_above_max, "max_workers` is smaller than the sum of `min_workers`"),
    (_wrong_type, "'two' is not of type 'integer'"),
])
def test_a_broken_cluster_yaml_is_refused(breakage, message) -> None:
    config = load_cluster_yaml()
    breakage(config)
    with pytest.raises((ValueError, jsonschema.ValidationError), match=message):
        validated(config)


def test_source_queue_keeps_each_domain_under_its_limit(tmp_path) -> None:
    local = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for path in local:
        path.write_bytes(b"")
    urls = ["https://site-a.example/1.mp4", "https://site-a.example/2.mp4", "https://site-a.example/3.mp4",
            "https://www.site-b.example/1.mp4"]
    sources = [parse_source(entry, tmp_path) for entry in [*urls, *map(str, local)]]
    assert [domain_of(s) for s in sources] == ["site-a.example"] * 3 + ["www.site-b.example", None, None]

    queue = SourceQueue(sources, per_domain=1)
    started = [queue.take() for _ in range(5)]
    # one per site, local files without limit, then nothing until a site has a free slot
    assert [s.raw if s else None for s in started] == [urls[0], urls[3], str(local[0]), str(local[1]), None]
    assert len(queue) == 2
    queue.finished(started[1])  # site-b finishing frees nothing for site-a
    assert queue.take() is None
    queue.finished(started[0])
    assert queue.take().raw == urls[1] and queue.take() is None

    unlimited = SourceQueue(sources, per_domain=0)
    assert [unlimited.take().raw for _ in sources] == [*urls, *map(str, local)] and not unlimited


@pytest.mark.parametrize("value", ["{CPU: 1}", "{curation: -1}", "{curation: lots}"])
def test_run_resources_must_be_custom_and_non_negative(value) -> None:
    with pytest.raises(ConfigError, match="run.resources"):
        load_config(CurationConfig, overrides=[f"run.resources={value}"])
    assert load_config(CurationConfig, overrides=["run.resources={curation: 1}"]).run.resources == {"curation": 1}


# --- a real two-node cluster ----------------------------------------------------------------------------

# The training annotations need model folders; the tasks ask for the CPU pool's custom resource.
CURATION_SETTINGS = ["--set", "annotations.enabled=false", "--set", "run.resources={curation: 1}"]


@pytest.fixture
def two_nodes(s3_bucket):
    """Two nodes that share no folder, only the S3 store (its variables are set before the nodes start)."""
    cluster = LocalCluster(fast_failure_detection=True)  # one test kills a node
    try:  # both carry the custom resource that pins curation to cluster.yaml's CPU pool
        cluster.start_head(num_cpus=1, resources={"curation": 1})
        cluster.add_node(num_cpus=1, resources={"curation": 1})
        yield cluster
    finally:
        cluster.shutdown()


def source_tasks(address: str, detail: bool = False) -> list:
    from ray.util.state import list_tasks

    return list_tasks(address=address, filters=[("func_or_class_name", "=", "_source_task")], limit=10_000,
                      detail=detail, raise_on_missing_output=False)


def node_ids(address: str) -> dict[str, str]:
    """'head' / 'worker' -> Ray node id of the alive nodes."""
    from ray.util.state import list_nodes

    return {("head" if n.is_head_node else "worker"): n.node_id for n in list_nodes(address=address)
            if n.state == "ALIVE"}


@pytest.mark.slow
def test_curation_spreads_over_two_nodes_and_survives_losing_one(two_nodes, s3_bucket, fixture_by_variant,
                                                                 tmp_path) -> None:
    # Eight copies of one talk of a few seconds: both nodes get several, so the second node can be
    # caught after finishing one and in the middle of the next.
    sources = [tmp_path / f"talk_{i}.mp4" for i in range(8)]
    for path in sources:
        shutil.copy(fixture_by_variant["in_sync"].path, path)
    # Identical bytes would be one source and seven duplicates: each copy gets its own last byte.
    for index, path in enumerate(sources):
        path.write_bytes(path.read_bytes() + bytes([index]))
    listing = tmp_path / "sources.txt"
    listing.write_text("".join(f"{path}\n" for path in sources))
    out = f"{s3_bucket}/curated"  # the nodes share no folder: every task writes to the store
    address = two_nodes.address
    wait_until(lambda: len(node_ids(address)) == 2, 60, "both nodes to register")
    head_id, worker_id = node_ids(address)["head"], node_ids(address)["worker"]

    run_log = tmp_path / "run.log"
    command = [sys.executable, "-m", "curation.run", "--address", address, "--source", str(listing), "--out", str(out),
               *CURATION_SETTINGS]
    with run_log.open("w") as log:
        driver = subprocess.Popen(command, cwd=ROOT, env=cluster_env(fast_failure_detection=True), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        def worker_mid_task() -> bool:
            assert driver.poll() is None, "the run ended before the node was killed:\n" + run_log.read_text()[-3000:]
            on_worker = [t.state for t in source_tasks(address) if t.node_id == worker_id]
            return "FINISHED" in on_worker and "RUNNING" in on_worker

        # Kill the second node once it has finished a source and is busy with the next one.
        wait_until(worker_mid_task, 240, "the second node to be in the middle of its second source", poll_s=0.1)
        two_nodes.kill(two_nodes.nodes[1])
        assert driver.wait(timeout=300) == 0, run_log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    def worker_failure_recorded() -> bool:  # the GCS marks the dead node's running task failed on its own schedule
        return any(t.node_id == worker_id and t.state == "FAILED" for t in source_tasks(address))

    wait_until(worker_failure_recorded, 60, "the task interrupted on the killed node to be recorded as failed")
    tasks = source_tasks(address, detail=True)
    assert all(t.required_resources == {"CPU": 1.0, "curation": 1.0} for t in tasks)
    finished = {t.task_id: t.node_id for t in tasks if t.state == "FINISHED"}
    assert set(finished.values()) == {head_id, worker_id}  # sources really ran on both nodes
    interrupted = {t.task_id for t in tasks if t.node_id == worker_id and t.state == "FAILED"}
    assert interrupted and all(finished[task] == head_id for task in interrupted)  # retried on the head
    assert len(finished) == len(sources)

    rows = pq.read_table(io.BytesIO(fsspec.filesystem("s3").cat_file(f"{out}/manifest.parquet"))).to_pylist()
    assert sorted(r["source"] for r in rows) == sorted(map(str, sources))  # one row each: its one clip
    assert all(r["status"] == "accepted" for r in rows)
    keys = [s["__key__"] for url in expand_shards([f"{out}/shards/*.tar"]) for s in shard_samples(url, strict=True)]
    assert len(keys) == len(set(keys))  # no clip written twice, although a source ran twice
    assert keys and sorted(keys) == sorted(r["clip_id"] for r in rows if r["status"] == "accepted")
