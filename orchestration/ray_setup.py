"""Joining a Ray cluster, or starting a local one, the same way for every job."""
from __future__ import annotations

import os
from typing import Optional

import ray


def init_ray(address: Optional[str], num_cpus: Optional[int]) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def shutdown_ray() -> None:
    """Leave the cluster (stopping the local one this process started); nothing if not connected."""
    ray.shutdown()
