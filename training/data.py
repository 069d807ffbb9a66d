"""An endless, seeded, exactly resumable stream of training batches from WebDataset shards.

Every reader (one per rank x DataLoader worker) owns a disjoint part of the data: whole shards
when there are at least as many shards as readers, otherwise every n-th sample. Raw samples
(undecoded bytes) pass a seeded shuffle buffer, then are decoded into training samples and
batched inside the worker. Each batch carries its reader's raw position, so a checkpoint can
record where every reader stands; on resume a reader replays its stream up to that position
without decoding anything, which restores the shuffle buffer exactly.
"""
from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from foundation.storage import expand_shards, tar_samples  # local paths and object URLs (s3://...) alike
from training.config import DataConfig

log = logging.getLogger(__name__)

Decoder = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]


class BadSample(ValueError):
    """A sample that cannot be used (broken media, too few frames); it is skipped and counted."""


class SkippedSample(Exception):
    """A good sample a data setting leaves out (e.g. data.unverified_sync=exclude); skipped, not counted as bad."""


def _log_and_continue(err: Exception) -> bool:
    log.warning("skipping unreadable shard data: %s", err)
    return True


def raw_samples(shards: list[str], reader: int, readers: int, seed: int) -> Iterator[dict[str, Any]]:
    """Endless raw samples for one reader; epochs differ only in the (seeded) shard order."""
    if not shards:
        raise ValueError("no training shards: set data.shards")
    split_by_shard = len(shards) >= readers
    mine = shards[reader::readers] if split_by_shard else shards
    for epoch in itertools.count():
        order = list(mine)
        random.Random(f"{seed}/{epoch}/{reader if split_by_shard else 'all'}").shuffle(order)
        stream = tar_samples(order, handler=_log_and_continue)
        taken = 0
        for index, sample in enumerate(stream):
            if split_by_shard or index % readers == reader:
                taken += 1
                yield sample
        if taken == 0:  # an empty epoch would repeat forever: fail instead of hanging
            raise ValueError(f"reader {reader} of {readers} gets no sample from {len(mine)} shard(s): "
                             "use fewer DataLoader workers or ranks, or more data")


def shuffled(samples: Iterator[dict], buffer_size: int, rng: random.Random) -> Iterator[dict]:
    """Reservoir-style shuffle: fill the buffer, then emit a random element per new arrival."""
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < buffer_size:
            buffer.append(sample)
            continue
        index = rng.randrange(len(buffer))
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


@dataclass
class ReaderState:
    position: int = 0  # raw samples taken from the shuffle buffer
    seen: int = 0
    bad: int = 0


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


class ShardStream(IterableDataset):
    """Batches of decoded samples for one rank; see the module docstring for the resume contract."""

    def __init__(self, shards: list[str], decode: Decoder, cfg: DataConfig, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.shards = expand_shards(shards)
        self.decode = decode
        self.cfg = cfg
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start: dict[int, ReaderState] = {}
        self.first_worker = 0

    def resume_from(self, states: dict[int, ReaderState], first_worker: int = 0) -> None:
        """Restart each logical worker at its state; `first_worker` is the one whose batch comes next
        (the DataLoader always polls process 0 first, so logical ids are rotated to match)."""
        self.start = dict(states)
        self.first_worker = first_worker

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        process, workers = (info.id, info.num_workers) if info else (0, 1)
        worker = (process + self.first_worker) % workers
        reader, readers = self.rank * workers + worker, self.world_size * workers
        state = ReaderState(**vars(self.start.get(worker, ReaderState())))
        stream = shuffled(raw_samples(self.shards, reader, readers, self.seed), self.cfg.shuffle_buffer,
                          random.Random(f"{self.seed}/shuffle/{reader}"))
        stream = itertools.islice(stream, state.position, None)  # replay without decoding
        batch: list[dict[str, Any]] = []
        for raw in stream:
            state.position += 1
            state.seen += 1
            rng = np.random.default_rng([self.seed, reader, state.position])
            try:
                item = self.decode(raw, rng)
            except SkippedSample:
                continue
            except BadSample as err:
                state.bad += 1
                log.warning("bad sample %s (%s): %s", raw.get("__key__"), raw.get("__url__"), err)
                self._check_bad(state)
                continue
            item["key"] = raw["__key__"]
            batch.append(item)
            if len(batch) == self.batch_size:
                out = collate(batch)
                out["reader_state"] = (worker, ReaderState(**vars(state)))
                yield out
                batch = []

    def _check_bad(self, state: ReaderState) -> None:
        if state.seen >= self.cfg.bad_check_after and state.bad / state.seen > self.cfg.max_bad_fraction:
            raise RuntimeError(
                f"{state.bad} of {state.seen} samples were bad (> data.max_bad_fraction="
                f"{self.cfg.max_bad_fraction}); check the shards {self.shards[:3]}..."
            )


def make_loader(stream: ShardStream, num_workers: int) -> DataLoader:
    # Batches are built in the workers; in-order fetching keeps the batch sequence deterministic.
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0,
                      multiprocessing_context="fork" if num_workers > 0 else None)


class ResumableBatches:
    """Iterates a loader and remembers each reader's state after the last batch handed out."""

    def __init__(self, stream: ShardStream, num_workers: int, states: Optional[dict[int, ReaderState]] = None,
                 next_worker: int = 0):
        self.states: dict[int, ReaderState] = dict(states or {})
        self.workers = max(1, num_workers)
        self.next_worker = next_worker
        stream.resume_from(self.states, next_worker)
        self._iter = iter(make_loader(stream, num_workers))

    def __next__(self) -> dict[str, Any]:
        batch = next(self._iter)
        worker, state = batch.pop("reader_state")
        self.states[worker] = state
        self.next_worker = (worker + 1) % self.workers
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"next_worker": self.next_worker, "readers": {w: vars(s) for w, s in self.states.items()}}

    @classmethod
    def from_state(cls, stream: ShardStream, num_workers: int, state: Optional[dict[str, Any]]) -> "ResumableBatches":
        if not state:
            return cls(stream, num_workers)
        readers = {int(w): ReaderState(**s) for w, s in state["readers"].items()}
        return cls(stream, num_workers, readers, int(state["next_worker"]))

    def totals(self) -> ReaderState:
        return ReaderState(
            position=sum(s.position for s in self.states.values()),
            seen=sum(s.seen for s in self.states.values()),
            bad=sum(s.bad for s in self.states.values()),
        )
