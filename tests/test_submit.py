"""`orchestration.submit` and the DeepSpeed launcher: commands built from plain data, and real jobs on a
local two-node Ray cluster (Jobs API, log streaming, exit status)."""
import json
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestration import deepspeed_launch as dl
from orchestration import submit
from localcluster import LocalCluster, cluster_env
from stagerun import stage_overrides

ROOT = Path(__file__).resolve().parents[1]

NODES = [  # the shape of `ray.nodes()`
    {"NodeID": "b" * 8, "Alive": True, "NodeManagerAddress": "10.0.0.7", "Resources": {"CPU": 96.0, "GPU": 8.0}},
    {"NodeID": "c" * 8, "Alive": True, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 32.0, "curation": 32.0}},
    {"NodeID": "d" * 8, "Alive": False, "NodeManagerAddress": "10.0.0.9", "Resources": {"CPU": 96.0, "GPU": 8.0}},
    {"NodeID": "a" * 8, "Alive": True, "NodeManagerAddress": "10.0.0.5", "Resources": {"CPU": 96.0, "GPU": 8.0}},
]


def test_hostfile_lists_alive_gpu_nodes_in_a_stable_order() -> None:
    nodes = dl.gpu_nodes(NODES)
    assert [n.ip for n in nodes] == ["10.0.0.5", "10.0.0.7"]  # no CPU-only node, no dead node
    assert dl.hostfile_text(nodes) == "10.0.0.5 slots=8\n10.0.0.7 slots=8\n"


def test_plan_starts_one_deepspeed_launcher_per_gpu_node() -> None:
    train_args = ["--config", "configs/stage1.yaml", "--set", "train.steps=10"]
    launches = dl.plan(NODES, dl.STAGES["stage1"], train_args, master_port=29600, hostfile="/tmp/h", python="py",
                       module=True)
    assert [(l.node_id, l.num_gpus) for l in launches] == [("a" * 8, 8), ("b" * 8, 8)]
    for rank, launch in enumerate(launches):
        assert launch.command == ["py", "-m", "deepspeed.launcher.runner", "--hostfile", "/tmp/h", "--no_ssh",
                                  "--node_rank", str(rank), "--master_addr", "10.0.0.5", "--master_port", "29600",
                                  "--module", "training.stage1", *train_args]
        assert launch.hostfile == ("/tmp/h", "10.0.0.5 slots=8\n10.0.0.7 slots=8\n")
    assert len(dl.plan(NODES, "training/stage2.py", [], max_nodes=1)) == 1


def test_plan_without_gpus_falls_back_to_torchrun_on_cpu() -> None:
    cpu_only = [n for n in NODES if "GPU" not in n["Resources"]]
    (launch,) = dl.plan(cpu_only, "training/stage2.py", ["--config", "c.yaml"], cpu_procs=2, python="py")
    assert launch.command == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "training/stage2.py", "--config", "c.yaml"]
    assert launch.node_id is None and launch.num_gpus == 0 and launch.hostfile is None


def test_launcher_options_are_separated_from_training_options() -> None:
    args, rest = dl.build_parser().parse_known_args(
        ["stage2", "--config", "c.yaml", "--gpu-nodes", "2", "--set", "a.b=1", "--gpu", "x"])
    assert (args.target, args.gpu_nodes) == ("stage2", 2)
    assert rest == ["--config", "c.yaml", "--set", "a.b=1", "--gpu", "x"]  # no prefix matching of --gpu


def test_entrypoints_quote_arguments_and_keep_home_for_the_cluster() -> None:
    cmd = submit.curation_entrypoint("~/my sources/list.txt", "/mnt/shared/out",
                                     ["--set", "run.resources={curation: 1}", "--retry-failed"])
    assert cmd == ("python -m curation.run --address auto --source ~/'my sources/list.txt' --out /mnt/shared/out "
                   "--set 'run.resources={curation: 1}' --retry-failed")
    train = submit.train_entrypoint("stage1", ["--config", "configs/stage1.yaml", "--set", "a=b c", "--gpu-nodes", "2"])
    assert shlex.split(train) == ["python", "-m", "orchestration.deepspeed_launch", "stage1", "--config",
                                  "configs/stage1.yaml", "--set", "a=b c", "--gpu-nodes", "2"]
    with pytest.raises(ValueError, match="absolute"):
        submit.curation_entrypoint("list.txt", "/out", [])
    assert submit.curation_entrypoint("s3://b/my list.txt", "s3://b/curated", []) == (
        "python -m curation.run --address auto --source 's3://b/my list.txt' --out s3://b/curated")


def test_relative_cluster_paths_are_refused_before_contacting_a_cluster(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        submit.main(["curation", "--source", "sources/list.txt", "--out", "/o", "--address", "http://127.0.0.1:9"])
    assert exit_.value.code == 2 and "must be absolute" in capsys.readouterr().err


def closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_cluster_at_the_address_is_one_line_saying_how_to_start_one(tmp_path) -> None:
    address = f"http://127.0.0.1:{closed_port()}"
    result = subprocess.run([sys.executable, "-m", "orchestration.submit", "curation", "--source", "s3://b/list.txt",
                             "--out", "s3://b/curated", "--address", address],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: no Ray cluster answers at {address}")
    assert all(hint in lines[0] for hint in ("ray up cluster.yaml", "ray start --head", "RAY_ADDRESS"))


def test_the_upload_leaves_out_environments_outputs_and_weights(tmp_path) -> None:
    """Packed by Ray's own working_dir packaging, as the job submission does."""
    from ray._private.runtime_env.packaging import create_package

    tree = ["curation/shards.py", "configs/stage1.yaml", "tests/test_x.py", ".venv/bin/python", ".git/HEAD",
            "demo_out/curated/shards/a-0000.tar", "curated/manifest.parquet", "runs/stage1/export/unet.safetensors",
            "pretrained/vae/model.safetensors", "sources/list.txt", "curation/__pycache__/x.pyc"]
    checkout = tmp_path / "checkout"
    for name in tree:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("x")
    env = submit.runtime_env(checkout)
    assert env["working_dir"] == str(checkout)
    create_package(str(checkout), tmp_path / "pkg.zip", include_gitignore=True, excludes=env["excludes"])
    with zipfile.ZipFile(tmp_path / "pkg.zip") as pkg:
        files = {name for name in pkg.namelist() if not name.endswith("/")}
    assert files == {"curation/shards.py", "configs/stage1.yaml", "tests/test_x.py"}


# --- real jobs on a local two-node cluster ------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster()
    try:
        local.start_head(num_cpus=1)
        local.add_node(num_cpus=1)
        yield local
    finally:
        local.shutdown()


def run_submit(cluster: LocalCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m orchestration.submit ARGS --address <cluster>` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "orchestration.submit", *args, "--address", cluster.dashboard_url],
                          cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=timeout)


SUBMITTED = ("in_sync", "truncated")  # one accepted, one broken: a demo-sized job


@pytest.fixture(scope="module")
def small_source_list(fixture_by_variant, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("submit") / "sources.txt"
    path.write_text("".join(f"{fixture_by_variant[v].path}\n" for v in SUBMITTED))
    return path


@pytest.mark.slow
def test_submit_runs_curation_on_the_cluster_and_exits_0(cluster, small_source_list, fixture_by_variant,
                                                          tmp_path) -> None:
    out = tmp_path / "curated"
    result = run_submit(cluster, "curation", "--source", str(small_source_list), "--out", str(out),
                        "--set", "run.max_in_flight=4", "--set", "annotations.enabled=false")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SUCCEEDED" in result.stdout.splitlines()[-1]
    assert '"accepted_clips"' in result.stdout  # the job's own output came back through the log stream
    for variant in SUBMITTED:  # so did the driver's line per finished source, with progress
        assert re.search(rf"source [0-9a-f]{{16}} {re.escape(str(fixture_by_variant[variant].path))}: "
                         r"\w+.*, \d+ clip\(s\) accepted, [0-9.]+ s \[\d/2, ", result.stdout), variant
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    outcome = {r["source"]: r["reason"] for r in rows}
    for variant in SUBMITTED:
        assert outcome[str(fixture_by_variant[variant].path)] == fixture_by_variant[variant].reason
    assert list((out / "shards").glob("*.tar"))


@pytest.mark.slow
def test_submit_exits_1_when_the_job_fails(cluster, tmp_path) -> None:
    result = run_submit(cluster, "curation", "--source", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "source list not found" in result.stdout
    assert "FAILED" in result.stdout.splitlines()[-1]


STAND_IN = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
with open(os.path.join(out, f"rank{env['RANK']}.json"), "w") as f:
    json.dump({"env": env, "argv": sys.argv[1:]}, f)
"""


@pytest.mark.slow
def test_deepspeed_launch_runs_ranks_on_a_gpu_node_of_the_cluster(cluster, tmp_path) -> None:
    """A node that declares 2 GPUs (Ray hands them out even here): DeepSpeed's launcher starts 2 ranks on it."""
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=2)
    try:
        result = subprocess.run([sys.executable, "-m", "orchestration.deepspeed_launch", str(script),
                                 "--address", cluster.address, "--master-port", "29517", "--out", str(tmp_path),
                                 "--set", "a=1"],
                                cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=300)
    finally:
        cluster.remove(gpu_node)  # later tests see a CPU-only cluster again
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, got in enumerate(ranks):
        assert got["env"]["RANK"] == str(rank) and got["env"]["WORLD_SIZE"] == "2"
        assert got["env"]["MASTER_PORT"] == "29517"
        assert got["argv"] == [f"--local_rank={rank}", "--out", str(tmp_path), "--set", "a=1"]
    assert "slots=2" in result.stderr  # the hostfile derived from Ray's node list is logged


@pytest.mark.slow
def test_submit_trains_stage1_on_the_cluster(cluster, curated_shards, tiny_pretrained, tmp_path) -> None:
    out = tmp_path / "stage1"
    sets = stage_overrides(curated_shards, tiny_pretrained, out, **{"run.max_steps": 2, "run.validate_every": 0})
    result = run_submit(cluster, "train", "stage1", "--config", "configs/demo/stage1.yaml", *sets, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SUCCEEDED" in result.stdout.splitlines()[-1]
    assert "stage1 step 2/2 (100%) loss" in result.stdout + result.stderr  # the progress line of the last step
    assert (out / "export" / "weights.yaml").is_file()
