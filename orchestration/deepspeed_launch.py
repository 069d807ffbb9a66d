"""Run training stage 1 or 2 (`training/stage{1,2}.py`) with DeepSpeed across the GPU nodes of a running Ray cluster.

`python -m orchestration.deepspeed_launch stage1 [--gpu-nodes N ...] --config configs/stage1.yaml [--set k=v ...]`
is what `python -m orchestration.submit train ...` runs as the Ray job. Options this module does not
know are passed to the training script unchanged (DeepSpeed adds `--local_rank=N`, as `deepspeed` does).

The DeepSpeed hostfile is derived from Ray's live node list (`<node ip> slots=<GPUs>`, one line per
GPU node). Instead of DeepSpeed's pdsh/SSH fan-out, one DeepSpeed launcher per node runs as a Ray task
pinned to that node (`--no_ssh --node_rank i`), so the nodes need no SSH keys between them. A cluster
without GPUs (a laptop, CI) runs the same script under torchrun on CPU instead, and says so.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import ray
from ray.autoscaler.sdk import request_resources
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

log = logging.getLogger("deepspeed_launch")

# Run as modules (`python -m`), found in each node's own copy of the project (a job's working_dir, a clone or
# an install), so that neither a clone-relative path nor a working directory has to be the same everywhere.
STAGES = {"stage1": "training.stage1", "stage2": "training.stage2"}


@dataclass(frozen=True)
class GpuNode:
    node_id: str
    ip: str
    gpus: int


@dataclass(frozen=True)
class Launch:
    """One process tree to start: on `node_id` (None = any node with a free CPU), holding `num_gpus`."""

    command: list[str]
    node_id: Optional[str] = None
    num_gpus: int = 0
    hostfile: Optional[tuple[str, str]] = None  # (path, text) to write on the node first


def gpu_nodes(nodes: list[dict]) -> list[GpuNode]:
    """Alive nodes with at least one GPU, from `ray.nodes()`, in a stable order (the first is rank 0)."""
    found = [GpuNode(n["NodeID"], n["NodeManagerAddress"], int(n["Resources"]["GPU"]))
             for n in nodes if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) >= 1]
    return sorted(found, key=lambda n: (n.ip, n.node_id))


def hostfile_text(nodes: list[GpuNode]) -> str:
    # Node IPs, not host names: Ray knows them and they resolve on every node.
    return "".join(f"{n.ip} slots={n.gpus}\n" for n in nodes)


def deepspeed_command(script: str, train_args: list[str], hostfile: str, master_addr: str, master_port: int,
                      node_rank: int, python: str = sys.executable, module: bool = False) -> list[str]:
    """`deepspeed --hostfile H --no_ssh --node_rank R --master_addr A --master_port P [--module] script args...`."""
    return [python, "-m", "deepspeed.launcher.runner", "--hostfile", hostfile, "--no_ssh", "--node_rank",
            str(node_rank), "--master_addr", master_addr, "--master_port", str(master_port),
            *(["--module"] if module else []), script, *train_args]


def cpu_command(script: str, train_args: list[str], nproc: int, python: str = sys.executable,
                module: bool = False) -> list[str]:
    """torchrun on one node; it sets RANK/WORLD_SIZE/MASTER_ADDR, so DeepSpeed needs no MPI discovery."""
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            *(["--module"] if module else []), script, *train_args]


def plan(nodes: list[dict], script: str, train_args: list[str], *, master_port: int = 29500, cpu_procs: int = 1,
         max_nodes: int = 0, hostfile: str = "", python: str = sys.executable, module: bool = False) -> list[Launch]:
    """The launches of `script` (a module if `module`) on a cluster whose `ray.nodes()` are `nodes`: one per GPU
    node, or a CPU run."""
    gpus = gpu_nodes(nodes)[: max_nodes or None]
    if not gpus:
        return [Launch(cpu_command(script, train_args, cpu_procs, python, module))]
    hostfile = hostfile or str(Path(tempfile.gettempdir()) / f"hallo-forge-{uuid.uuid4().hex[:8]}.hostfile")
    text = hostfile_text(gpus)
    return [Launch(deepspeed_command(script, train_args, hostfile, gpus[0].ip, master_port, rank, python, module),
                   node_id=node.node_id, num_gpus=node.gpus, hostfile=(hostfile, text))
            for rank, node in enumerate(gpus)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.deepspeed_launch", allow_abbrev=False,
        description="Run a training stage with DeepSpeed on the GPU nodes of the Ray cluster "
                    "(torchrun on CPU when it has none). Unknown options go to the training script.")
    parser.add_argument("target", help="stage1, stage2 (run as the modules training.stage1/2 of the node's copy of "
                                       "the project), or the path of any DeepSpeed script")
    parser.add_argument("--address", default="auto", help="Ray cluster to use (default: the one this job runs on)")
    parser.add_argument("--gpu-nodes", type=int, default=0,
                        help="ask the autoscaler for this many GPU nodes and wait for them; 0 = use the GPU nodes "
                             "alive now (all of them)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs of one GPU node (default 8)")
    parser.add_argument("--wait-s", type=float, default=1800.0, help="how long to wait for --gpu-nodes (default 1800)")
    parser.add_argument("--master-port", type=int, default=29500, help="torch.distributed port on rank 0's node")
    parser.add_argument("--cpu-procs", type=int, default=1, help="processes for the CPU fallback (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")
    return parser


def _wait_for_gpu_nodes(count: int, gpus_per_node: int, wait_s: float) -> None:
    request_resources(bundles=[{"GPU": gpus_per_node}] * count)
    deadline = time.monotonic() + wait_s
    while len(gpu_nodes(ray.nodes())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} GPU nodes did not come up within {wait_s:.0f} s")
        time.sleep(10)  # polling the autoscaler's progress; nodes take minutes to boot


@ray.remote
def _run(launch: Launch) -> int:
    if launch.hostfile is not None:
        path, text = launch.hostfile
        Path(path).write_text(text)
    import orchestration  # imported here, on the node: its copy of the project (job working_dir, clone or install)

    # The stage modules are found in that copy; relative paths in the arguments stay relative to the task's
    # working directory (a job's working_dir), as they were on the command line.
    root = str(Path(orchestration.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(launch.command, env=env, check=False).returncode


def run_launches(launches: list[Launch]) -> int:
    """Start every launch as a Ray task (pinned, with its GPUs reserved) and return the first failure code."""
    refs = []
    for launch in launches:
        strategy = NodeAffinitySchedulingStrategy(launch.node_id, soft=False) if launch.node_id else "DEFAULT"
        refs.append(_run.options(num_cpus=0 if launch.num_gpus else 1, num_gpus=launch.num_gpus, max_retries=0,
                                 scheduling_strategy=strategy).remote(launch))
    codes = ray.get(refs)
    return next((code for code in codes if code != 0), 0)


def main(argv: Optional[list[str]] = None) -> int:
    args, train_args = build_parser().parse_known_args(argv)
    if "--print-config" in train_args:  # the training script's table, without joining the cluster
        from foundation.config import describe_markdown
        from training.config import TrainConfig

        print(describe_markdown(TrainConfig))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ray.init(address=args.address)
    try:
        if args.gpu_nodes:
            _wait_for_gpu_nodes(args.gpu_nodes, args.gpus_per_node, args.wait_s)
        launches = plan(ray.nodes(), STAGES.get(args.target, args.target), train_args, master_port=args.master_port,
                        cpu_procs=args.cpu_procs, max_nodes=args.gpu_nodes, module=args.target in STAGES)
        if launches[0].node_id is None:
            log.warning("no GPU node in the cluster: running %s on CPU with torchrun (%d process(es))",
                        args.target, args.cpu_procs)
        else:
            log.info("DeepSpeed on %d GPU node(s), hostfile %s:\n%s", len(launches), *launches[0].hostfile)
        for launch in launches:
            log.info("launch on node %s: %s", launch.node_id or "any", " ".join(launch.command))
        if args.dry_run:
            return 0
        code = run_launches(launches)
        log.info("%s finished with exit code %d", args.target, code)
        return code
    finally:
        if args.gpu_nodes:
            request_resources(bundles=[])  # let the autoscaler retire the GPU nodes when idle


if __name__ == "__main__":
    sys.exit(main())
