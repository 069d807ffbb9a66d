"""A real multi-node Ray cluster on one machine, for tests.

Each node is a `ray start` with its own temp dir and ports, run in its own session (process group):
every process of that node (raylet, agents, workers, log monitor; GCS and dashboard on the head) stays
in that group, so one node can be SIGKILLed alone and `shutdown()` leaves nothing behind. The cluster
writes its address only into its own temp dirs, so other Ray users on the machine never join it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
# Task states reach the state API every 100 ms instead of every second.
TASK_EVENTS = {"RAY_task_events_report_interval_ms": "100"}
# A dead node is noticed within seconds instead of Ray's default 15-30 s, for the test that must catch
# a node's loss mid-run; the other clusters keep the defaults and `remove` waits for the GCS instead.
FAST_FAILURE_DETECTION = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                          "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.2) -> object:
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def cluster_env(fast_failure_detection: bool = False) -> dict[str, str]:
    """The environment nodes and their clients run in: this interpreter first on PATH (jobs run `python`)."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **TASK_EVENTS,
               **(FAST_FAILURE_DETECTION if fast_failure_detection else {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    return env


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass  # exited while we looked
    return members


@dataclass
class Node:
    temp_dir: Path
    pgid: int  # every process of this node


@dataclass
class LocalCluster:
    # Short, because Ray's unix socket paths live under it.
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc", dir="/tmp")))
    nodes: list[Node] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0
    fast_failure_detection: bool = False  # see FAST_FAILURE_DETECTION

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], num_cpus: int, num_gpus: int, resources: dict[str, float]) -> Node:
        index = len(self.nodes)
        temp_dir = self.root / f"n{index}"
        # Port 0 lets the OS pick; the rest get free ports so two nodes on one machine never collide.
        cmd = [RAY, "start", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--resources={json.dumps(resources)}",
               f"--temp-dir={temp_dir}",
               "--disable-usage-stats", f"--node-manager-port={free_port()}", "--object-manager-port=0",
               "--min-worker-port=0", "--max-worker-port=0", f"--dashboard-agent-listen-port={free_port()}",
               "--dashboard-agent-grpc-port=0", "--metrics-export-port=0", "--runtime-env-agent-port=0", *args]
        log_path = self.root / f"start{index}.log"
        with log_path.open("w") as log:
            # A new session: the node's processes share a fresh process group, ours to kill.
            proc = subprocess.Popen(cmd, env=cluster_env(self.fast_failure_detection), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(temp_dir, proc.pid)
        self.nodes.append(node)
        if proc.wait(timeout=120) != 0:
            raise RuntimeError(f"ray start failed:\n{log_path.read_text()[-2000:]}")
        return node

    def start_head(self, num_cpus: int = 1, resources: dict[str, float] | None = None) -> Node:
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        return self._start(["--head", f"--port={self.gcs_port}", f"--ray-client-server-port={free_port()}",
                            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                            f"--dashboard-port={self.dashboard_port}"], num_cpus, 0, resources or {})

    def add_node(self, num_cpus: int = 1, num_gpus: int = 0, resources: dict[str, float] | None = None) -> Node:
        """A worker node; `num_gpus` declares GPUs that Ray hands out even on a machine without any."""
        return self._start([f"--address={self.address}"], num_cpus, num_gpus, resources or {})

    def kill(self, node: Node) -> None:
        """SIGKILL every process of one node: what a lost machine looks like to the rest of the cluster."""
        try:
            os.killpg(node.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def alive_nodes(self) -> int:
        from ray.util.state import list_nodes

        return sum(n.state == "ALIVE" for n in list_nodes(address=self.address))

    def remove(self, node: Node) -> None:
        """Kill a node and wait until the cluster has marked it dead: until then the GCS still lists it
        alive, and a job started meanwhile may plan work on it."""
        alive = self.alive_nodes()
        self.kill(node)
        wait_until(lambda: self.alive_nodes() < alive, 120, "the cluster to mark the killed node dead")

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            self.kill(node)
        for node in self.nodes:
            wait_until(lambda: not group_members(node.pgid), 30, f"process group {node.pgid} to exit")
        shutil.rmtree(self.root, ignore_errors=True)
