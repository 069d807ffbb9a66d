"""An endless, seeded, exactly resumable stream of training batches from WebDataset shards.

Every reader (one per rank x DataLoader worker) owns a disjoint part of the data: whole shards
when there are at least as many shards as readers, otherwise every n-th sample. Each epoch a
reader walks its shards in a seeded order, in windows of `data.shuffle_shards` shards read
interleaved; a window's raw samples (undecoded bytes) pass a seeded shuffle buffer that empties
at the window's end, then are decoded into training samples and batched inside the worker.

Each batch carries its reader's position (epoch, window, samples taken from the window), so a
checkpoint records where every reader stands. On resume a reader reopens its window and replays
it up to that offset without decoding, which rebuilds the shuffle buffer exactly: at most one
window of raw reads, however many steps the run had taken.

With `data.latents` set, every shard is read together with its latent-cache shard (same file
name under that folder, same samples in the same order; see training/latent_cache/cli.py), whose
entries join the sample.

With `data.language_weights` set, each reader keeps a sample with probability its spoken language's
weight over the largest weight (`LanguageWeights`), drawn from a generator seeded by the sample's
position, so the choice is the same on resume and leaves the decoder's draws unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import mmap
import random
import tarfile
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator, Optional

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from foundation import schema
from foundation.storage import expand_shards, open_read  # local paths and object URLs (s3://...) alike
from training.config import DataConfig

log = logging.getLogger(__name__)

Decoder = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]
ShardReader = Callable[[str], Iterator[dict[str, Any]]]
Position = tuple[int, int, int]  # (epoch, window, samples taken from the window)


class BadSample(ValueError):
    """A sample that cannot be used (broken media, too few frames); it is skipped and counted."""


class SkippedSample(Exception):
    """A good sample a data setting leaves out (e.g. data.unverified_sync=exclude); skipped, not counted as bad."""


class CacheMismatch(RuntimeError):
    """The latent cache does not belong to these shards (missing, stale, other VAE or resolution)."""


def open_shard(url: str) -> IO[bytes]:
    """The one place a shard is opened: a local path, an object URL, or any URL webdataset's gopen opens."""
    return open_read(url)


def _log_and_continue(err: Exception) -> bool:
    log.warning("skipping unreadable shard data: %s", err)
    return True


def _mapped(stream: IO[bytes]) -> Optional[memoryview]:
    """The whole file behind `stream`, memory-mapped, when it is a local non-empty file."""
    try:
        return memoryview(mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ))
    except (AttributeError, OSError, ValueError):  # not a file (a pipe, a network stream) or empty
        return None


def _tar_files(stream: IO[bytes], url: str, handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """The regular files of a tar stream, as webdataset's grouping expects them.

    A local uncompressed shard is memory-mapped and its .npy entries are handed out as views, not
    copies: a sample needs a few rows of its clip's arrays (audio features, cached latents: 20 MB
    per 10 s clip at 512 px), and reading all of them was most of the cached loader's time. Other
    streams are read through a 1 MiB buffer (webdataset's own iterator reads 10 KB at a time).
    """
    seekable = getattr(stream, "seekable", lambda: False)()  # webdataset's pipes have no seekable()
    mapped = _mapped(stream) if seekable else None
    try:
        with tarfile.open(fileobj=stream, mode="r:*" if seekable else "r|*", bufsize=1 << 20) as tar:
            views = mapped is not None and tar.fileobj is stream  # offsets are the file's (not compressed)
            for info in tar:
                if not info.isreg():
                    continue
                if views and info.name.endswith(".npy"):
                    data: Any = mapped[info.offset_data:info.offset_data + info.size]
                    if len(data) < info.size:
                        raise tarfile.ReadError(f"{info.name} is cut short")
                else:
                    data = tar.extractfile(info).read()
                yield {"fname": info.name, "data": data, "__url__": url}
                tar.members = []  # keep no index of what was read
    except (tarfile.TarError, EOFError, OSError) as err:  # truncated or corrupt: keep what was read
        handler(err)


def shard_samples(url: str, strict: bool = False) -> Iterator[dict[str, Any]]:
    """One shard's raw samples in stored order; unreadable data is logged and skipped, or raised when `strict`."""
    handler = wds.handlers.reraise_exception if strict else _log_and_continue
    try:
        stream = open_shard(url)
    except OSError as err:
        if strict:
            raise
        _log_and_continue(err)
        return
    with contextlib.closing(stream):
        yield from wds.tariterators.group_by_keys(_tar_files(stream, url, handler), handler=handler)


def cache_shard(shard: str, root: str) -> str:
    """The latent-cache shard of `shard`: the same file name under `root`."""
    return f"{root.rstrip('/')}/{shard.rsplit('/', 1)[-1]}"


def shard_with_latents(shard: str, root: str) -> Iterator[dict[str, Any]]:
    """`shard`'s samples joined with its cache shard's entries."""
    cached = shard_samples(cache_shard(shard, root))
    for sample in shard_samples(shard):
        extra = next(cached, None)
        if extra is None or extra["__key__"] != sample["__key__"]:
            found = "nothing" if extra is None else f"sample {extra['__key__']}"
            raise CacheMismatch(f"latent cache {cache_shard(shard, root)} has {found} where {shard} has sample "
                                f"{sample['__key__']}: rebuild it with python -m training.latent_cache")
        sample.update((k, v) for k, v in extra.items() if not k.startswith("__"))
        yield sample


def _interleaved(streams: list[Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """One sample of each stream in turn, until all are exhausted."""
    active = list(streams)
    while active:
        for stream in list(active):
            sample = next(stream, None)
            if sample is None:
                active.remove(stream)
            else:
                yield sample


def epoch_windows(shards: list[str], reader: int, readers: int, seed: int, epoch: int, size: int) -> list[list[str]]:
    """The reader's shards for `epoch` in their seeded order, cut into windows of `size` shards."""
    split_by_shard = len(shards) >= readers
    order = list(shards[reader::readers] if split_by_shard else shards)
    random.Random(f"{seed}/{epoch}/{reader if split_by_shard else 'all'}").shuffle(order)
    return [order[i:i + size] for i in range(0, len(order), size)]


def window_samples(window: list[str], reader: int, readers: int, split_by_shard: bool,
                   read: ShardReader = shard_samples) -> Iterator[dict[str, Any]]:
    """A window's raw samples, its shards interleaved; every n-th one if readers share the shards."""
    samples = _interleaved([read(url) for url in window])
    return samples if split_by_shard else itertools.islice(samples, reader, None, readers)


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


def reader_stream(shards: list[str], reader: int, readers: int, seed: int, cfg: DataConfig, start: Position = (0, 0, 0),
                  read: ShardReader = shard_samples) -> Iterator[tuple[Position, dict[str, Any]]]:
    """Endless (position after the sample, raw sample) pairs for one reader, from `start` on.

    Only the window `start` points into is replayed; the windows before it are never opened.
    """
    if not shards:
        raise ValueError("no training shards: set data.shards")
    split_by_shard = len(shards) >= readers
    first_epoch, first_window, skip = start
    for epoch in itertools.count(first_epoch):
        windows = epoch_windows(shards, reader, readers, seed, epoch, cfg.shuffle_shards)
        from_the_start, taken = (first_window, skip) == (0, 0), 0
        for index in range(first_window, len(windows)):
            rng = random.Random(f"{seed}/shuffle/{reader}/{epoch}/{index}")
            stream = shuffled(window_samples(windows[index], reader, readers, split_by_shard, read),
                              cfg.shuffle_buffer, rng)
            for offset, raw in enumerate(itertools.islice(stream, skip, None), start=skip + 1):
                taken += 1
                yield (epoch, index, offset), raw
            skip = 0
        first_window = 0
        if from_the_start and taken == 0:  # an empty epoch would repeat forever: fail instead of hanging
            raise ValueError(f"reader {reader} of {readers} gets no sample from {len(shards)} shard(s): "
                             "use fewer DataLoader workers or ranks, or more data")


def raw_samples(shards: list[str], reader: int, readers: int, seed: int) -> Iterator[dict[str, Any]]:
    """Endless raw samples for one reader in its seeded shard order, unshuffled (validation's pick)."""
    return (raw for _, raw in reader_stream(shards, reader, readers, seed, DataConfig(shuffle_buffer=1)))


class LanguageWeights:
    """Whether a raw sample is used under data.language_weights (see the module docstring)."""

    def __init__(self, weights: dict[str, float], give_up_after: int) -> None:
        top = max([*weights.values(), 1.0])
        self.keep = {language: weight / top for language, weight in weights.items()}
        self.default = 1.0 / top  # languages not listed, and clips without one, weigh 1
        self.give_up_after = give_up_after
        self.seen = self.used = 0

    def __bool__(self) -> bool:
        return bool(self.keep)

    def __call__(self, raw: dict[str, Any], seed: list[int]) -> bool:
        try:
            language = schema.ClipMeta.from_json(raw[schema.KEY_META]).language
        except (KeyError, ValueError, TypeError):
            return True  # the decoder says what is wrong with the sample
        share = self.keep.get(language, self.default) if language else self.default
        used = share >= 1.0 or bool(np.random.default_rng([*seed, 1]).random() < share)
        self.seen, self.used = self.seen + 1, self.used + used
        if self.used == 0 and self.seen >= self.give_up_after:  # else an epoch of nothing would repeat forever
            raise RuntimeError(f"data.language_weights {self.keep} left out the first {self.seen} clips (last: "
                               f"{language}): give the shards' languages a weight above 0")
        return used


@dataclass
class ReaderState:
    epoch: int = 0
    window: int = 0  # the reader's window of shards in this epoch's order
    offset: int = 0  # samples taken from that window (after shuffling)
    seen: int = 0
    bad: int = 0

    @property
    def position(self) -> Position:
        return self.epoch, self.window, self.offset


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
        read = functools.partial(shard_with_latents, root=self.cfg.latents) if self.cfg.latents else shard_samples
        languages = LanguageWeights(self.cfg.language_weights, self.cfg.bad_check_after)
        batch: list[dict[str, Any]] = []
        for position, raw in reader_stream(self.shards, reader, readers, self.seed, self.cfg, state.position, read):
            state.epoch, state.window, state.offset = position
            state.seen += 1
            if languages and not languages(raw, [self.seed, reader, *position]):
                continue
            rng = np.random.default_rng([self.seed, reader, *position])
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
        if any("position" in s for s in state["readers"].values()):
            raise ValueError("this checkpoint's data position counts raw samples from the start (the stream before "
                             "windowed shuffling): resume it with the version that wrote it, or start anew")
        readers = {int(w): ReaderState(**s) for w, s in state["readers"].items()}
        return cls(stream, num_workers, readers, int(state["next_worker"]))

    def totals(self) -> ReaderState:
        """Samples seen and bad, summed over the readers (the position fields stay 0)."""
        return ReaderState(seen=sum(s.seen for s in self.states.values()), bad=sum(s.bad for s in self.states.values()))
