"""Submit curation or training to a running Ray cluster, follow its logs, exit with its status.

    python -m orchestration.submit curation --source s3://BUCKET/lists/list.txt --out s3://BUCKET/curated \\
        [--set run.resources='{curation: 1}' ...]
    python -m orchestration.submit train stage1 --config configs/stage1.yaml [--set key=value ...] [--gpu-nodes 2]

The cluster is the Ray Jobs API at --address, else $RAY_ADDRESS, else http://127.0.0.1:8265 (the
dashboard; `ray dashboard cluster.yaml` forwards it from a `ray up` cluster). This checkout is uploaded
as the job's working directory (without .venv, .git, outputs and weights). `--source`/`--out` are
object URLs (s3://...) or paths on the cluster: absolute, or `~/...` (expanded there). The job's log,
streamed here, has one line per finished source with the run's progress. Exit code: 0 when the job
SUCCEEDED, 2 when no cluster answers at the address (one line saying how to start one).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

from foundation.project import CLONE, is_clone

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Never uploaded (gitignore syntax): environments, VCS data, outputs, weights; the job server caps the size.
UPLOAD_EXCLUDES = ["/.venv", ".git", "__pycache__", ".pytest_cache", "/demo_out", "/out", "/runs", "/curated",
                   "/pretrained", "/sources", "*.tar", "*.safetensors", "*.pt", "*.ckpt"]


def cluster_path(text: str) -> str:
    """A path as the cluster's shell should see it: an object URL (s3://...), absolute, or `~/...` left for
    the cluster to expand."""
    if "://" in text:
        return shlex.quote(text)
    if text.startswith("~/"):
        return "~/" + shlex.quote(text[2:])
    if not os.path.isabs(text):
        raise ValueError(f"{text!r} is a path on the cluster and must be absolute or start with ~/")
    return shlex.quote(text)


def curation_entrypoint(source: str, out: str, curation_args: list[str]) -> str:
    """The job's shell command: curation.run on the cluster it runs in (`--address auto`)."""
    return " ".join(["python -m curation.run --address auto --source", cluster_path(source),
                     "--out", cluster_path(out), *map(shlex.quote, curation_args)])


def train_entrypoint(stage: str, args: list[str]) -> str:
    """The job's shell command: the DeepSpeed launcher, which reads the cluster's nodes when it starts."""
    return shlex.join(["python", "-m", "orchestration.deepspeed_launch", stage, *args])


def runtime_env(working_dir: Optional[Path] = None) -> dict:
    """This clone uploaded as the job's working directory; from an installed copy nothing is uploaded, and the
    cluster's nodes run the hallo-forge installed there."""
    working_dir = working_dir or (CLONE if is_clone() else None)
    return {"working_dir": str(working_dir), "excludes": list(UPLOAD_EXCLUDES)} if working_dir else {}


def no_cluster_message(address: str, err: Exception) -> str:
    """One line for an address that does not answer: what was tried and how to get a cluster there."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"error: no Ray cluster answers at {address} ({first.rstrip('.')}). Start one with `ray up cluster.yaml` "
            "(then `ray dashboard cluster.yaml` forwards it here) or `ray start --head` on this machine, or point "
            "--address / RAY_ADDRESS at a running cluster's dashboard (http://HEAD:8265)")


async def _follow(client, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        print(chunk, end="", flush=True)


def submit_and_follow(address: str, entrypoint: str, env: Optional[dict] = None) -> int:
    """Submit, stream the job's logs until it ends, print its final status; 0 only when it SUCCEEDED."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, ValueError, RuntimeError) as err:  # the client's ways of saying "nobody there"
        print(no_cluster_message(address, err), file=sys.stderr)
        return 2
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env if env is not None else runtime_env())
    print(f"submitted {job_id}: {entrypoint}", flush=True)
    try:
        asyncio.run(_follow(client, job_id))
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (ray job stop {job_id} --address {address})")
        return 130
    info = client.get_job_info(job_id)
    reason = (info.message or "").split("\n", 1)[0]  # the rest repeats the log tail we already streamed
    print(f"job {job_id} {info.status.value}" + (f": {reason}" if reason else ""))
    return 0 if info.status == JobStatus.SUCCEEDED else 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS,
                        help="Ray Jobs API (dashboard) address; default $RAY_ADDRESS, else " + DEFAULT_ADDRESS)
    parser = argparse.ArgumentParser(prog="python -m orchestration.submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs = parser.add_subparsers(dest="job", required=True)
    curation = jobs.add_parser("curation", parents=[common], allow_abbrev=False,
                               help="curation.run on the cluster; other options are passed to it")
    curation.add_argument("--source", required=True, help="source list: an object URL or a path on the cluster")
    curation.add_argument("--out", required=True,
                          help="output: an object store prefix (s3://bucket/curated), or a folder on the cluster, "
                               "which with several nodes must be a shared filesystem")
    train = jobs.add_parser("train", parents=[common], allow_abbrev=False,
                            help="a training stage with DeepSpeed on the cluster's GPU nodes; other options "
                                 "(--config, --set, --gpu-nodes, ...) are passed to orchestration.deepspeed_launch")
    train.add_argument("stage", choices=["stage1", "stage2"])
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.job == "curation":
            entrypoint = curation_entrypoint(args.source, args.out, rest)
        else:
            entrypoint = train_entrypoint(args.stage, rest)
    except ValueError as err:
        parser.error(str(err))
    return submit_and_follow(args.address, entrypoint)


if __name__ == "__main__":
    sys.exit(main())
