"""torch's CPU thread count: explicit, or each process's share of the CPUs it may use."""
import os

import pytest
import torch

from foundation.cpu_threads import set_cpu_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_an_explicit_count_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1


def test_auto_shares_the_cpus_between_the_processes_of_a_node(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    torch.set_num_threads(6)  # torch's default: physical cores
    assert set_cpu_threads(0, processes_per_node=1) == 6  # never above torch's default
    torch.set_num_threads(6)
    assert set_cpu_threads(0, processes_per_node=4) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert set_cpu_threads(0) == 1


def test_auto_keeps_what_omp_num_threads_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)  # what torch read from it at start-up
    assert set_cpu_threads(0, processes_per_node=2) == 3


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        set_cpu_threads(-1)
