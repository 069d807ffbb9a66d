"""Start-up checks of a training run: one line and exit 2 before DeepSpeed starts or a model is built.

`preflight` checks that the shards exist, that the DeepSpeed JSON exists and parses, that the asked
devices are there, that the pretrained bases and stage 1's export are complete, and that every shard's
audio features come from one encoder, the one the model is built for (`check_audio_encoder`), and
makes the run's behaviour.separate_vocals follow the shards' (`separate_like_the_shards`); then it
settles the output folder:

- `run.resume=latest` with checkpoints: the folder's `config.yaml` (the config its run was started
  with) must agree on every key that changes results (`foundation.config.result_keys`): the model,
  the data and the objective. Keys marked results=False (run.max_steps, logging, the optimizer, ...)
  may change; the changes are logged.
- `run.resume=none` into a folder that holds an earlier run refuses, unless `run.overwrite=true`,
  which deletes that run's checkpoints, export, validation videos and TensorBoard logs first.

Rank 0 then writes the run's config into `config.yaml`, so the folder always says what made it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import braceexpand
import yaml
from webdataset.tariterators import base_plus_ext

from foundation import hub, schema
from foundation.audio_encoder import IDENTITY, Record, describe, encoder_record, same_encoder, same_shape
from foundation.audio_features import WAV2VEC2_FILES
from foundation.config import ConfigError, changed_keys, result_keys, to_dict
from foundation.storage import StorageError, expand_shards, file_exists, is_url
from model.pretrained import base_paths, base_refs
from model.weights import BASE_NEEDS as EXPORT_BASE_NEEDS
from model.weights import check_weights_folder, read_index, resolve
from model.weights_behaviour import ModelBehaviour
from training.checkpoint import TAG, complete_tags, step_of
from training.config import TrainConfig
from training.data import open_shard
from training.engine import check_devices, deepspeed_json
from training.latent_cache.read import check_cache

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
RUN_OUTPUTS = ("checkpoints", "export", "validation", "tensorboard", CONFIG_FILE)
BASE_NEEDS: dict[str, hub.Needs] = {**EXPORT_BASE_NEEDS, "unet": hub.DIFFUSERS}


def stage_bases(stage: str, cfg: TrainConfig) -> tuple[str, ...]:
    """The bases a stage loads (SD's UNet and the motion module: only stage 1 built from the bases; every
    other start reads them from `model.init_from`) or records in its export for generation."""
    loaded = ("unet", "motion") if stage == "stage1" and not cfg.model.init_from else ()
    return (*loaded, *EXPORT_BASE_NEEDS)


def check_shards(key: str, patterns: list[str], required: bool) -> None:
    if required and not patterns:
        raise ConfigError(f"config key '{key}' is empty: give the curated shards, e.g. [curated/shards/*.tar]")
    for pattern in patterns:
        try:
            named = set(braceexpand.braceexpand(pattern))  # what a listing found exists: ask only about the rest
            missing = [s for s in expand_shards([pattern]) if s in named and not file_exists(s)]
        except StorageError as err:
            raise ConfigError(f"config key '{key}': {err}") from err
        if missing:
            raise ConfigError(f"config key '{key}': {pattern!r} matches no file" if missing == [pattern] else
                              f"config key '{key}': {pattern!r} names missing files, e.g. {missing[0]}")


def check_bases(stage: str, cfg: TrainConfig) -> Path:
    """The pretrained base folder (resolved), with every part this stage needs."""
    base = cfg.model.pretrained_folder()
    paths = base_paths(base)
    hint = "(`hallo-weights fetch --to DIR`, or `hallo-standins --to DIR` for stand-ins)"
    for part in stage_bases(stage, cfg):
        if part == "motion":
            if not paths[part].is_file():
                raise ConfigError(f"config key 'model.pretrained_dir': {base} has no {paths[part].relative_to(base)} {hint}")
            continue
        try:
            hub.model_folder(str(paths[part]), "model.pretrained_dir", BASE_NEEDS[part])
        except ConfigError as err:
            raise ConfigError(f"{err} {hint}") from err
    return base


def first_meta(url: str) -> Optional[schema.ClipMeta]:
    """The metadata of a shard's first sample, reading no further than its `json` entry (a local shard is
    seeked through, not read); None when the shard holds no readable sample (training reports those)."""
    try:
        with contextlib.closing(open_shard(url)) as stream:
            seekable = getattr(stream, "seekable", lambda: False)()
            with tarfile.open(fileobj=stream, mode="r:*" if seekable else "r|*") as tar:
                first = None
                for info in tar:
                    key, ext = base_plus_ext(info.name) if info.isreg() else (None, None)
                    if key is None:
                        continue
                    if first not in (None, key):
                        return None  # the first sample has no metadata: training says what is wrong with it
                    first = key
                    if ext == schema.KEY_META:
                        return schema.ClipMeta.from_json(tar.extractfile(info).read())
    except (tarfile.TarError, EOFError, OSError):
        return None
    except ValueError as err:  # another schema version
        raise ConfigError(f"data.shards: {url}: {err}: curate it again with this version") from err
    return None


def run_encoder(cfg: TrainConfig, base: Path, init_from: Optional[str]) -> tuple[str, Record]:
    """The audio encoder the model is built for, as (name to record, record): model.audio_encoder, else the
    encoder model.init_from records, else the base's wav2vec2. With both model.audio_encoder and init_from,
    the new encoder must have the shape init_from's audio projection takes (a 768 x 12 encoder fine-tunes
    Hallo's weights)."""
    inherited: Optional[tuple[str, Record]] = None
    if init_from:
        index = read_index(init_from)
        entry = index.wav2vec2
        folder = resolve(init_from, entry, "model.init_from's wav2vec2")
        local = not is_url(entry) and (Path(init_from) / entry).exists()
        name = str(folder) if local else entry  # a hub id or URL stays as recorded
        inherited = name, index.audio_encoder or encoder_record(folder, name)
    ref = cfg.model.audio_encoder
    if not ref:
        if inherited:
            return inherited
        name = base_refs(cfg.model.pretrained_dir)["wav2vec2"]
        return name, encoder_record(base_paths(base)["wav2vec2"], name)
    folder = hub.model_folder(ref, "model.audio_encoder", WAV2VEC2_FILES)
    name = str(folder) if Path(ref).expanduser().exists() else ref
    try:
        record = encoder_record(folder, name)
    except ValueError as err:  # ConfigError too: not a wav2vec2-family encoder
        raise ConfigError(f"config key 'model.audio_encoder': {err}") from err
    if inherited and not same_shape(inherited[1], record):
        raise ConfigError(f"config key 'model.audio_encoder': {describe(record)} does not fit model.init_from, built for "
                          f"{describe(inherited[1])}: its audio projection takes {inherited[1]['layers']} x "
                          f"{inherited[1]['width']} features (start from the bases with another encoder instead)")
    if inherited and not same_encoder(inherited[1], record):
        log.warning("model.init_from was trained on the features of %s; fine-tuning it on %s", describe(inherited[1]),
                    describe(record))
    return name, record


def shard_metas(shards: list[str]) -> dict[str, Optional[schema.ClipMeta]]:
    """Each shard's first sample's metadata, read concurrently (None: unreadable, training reports it)."""
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(shards, pool.map(first_meta, shards)))


def check_audio_encoder(metas: dict[str, Optional[schema.ClipMeta]], encoder: Record) -> None:
    """Every shard's features (`shard_metas`) from one encoder, `encoder`."""
    found: dict[str, tuple[Record, list[str]]] = {}
    for shard, meta in metas.items():
        if meta is not None and meta.audio_encoder:
            key = "/".join(str(meta.audio_encoder.get(k)) for k in IDENTITY)
            found.setdefault(key, (meta.audio_encoder, []))[1].append(shard)
    if len(found) > 1:
        named = "; ".join(f"{describe(record)} in {len(where)} shard(s), e.g. {where[0]}" for record, where in found.values())
        raise ConfigError(f"data.shards hold the features of {len(found)} audio encoders ({named}): train on the shards "
                          "of one encoder (curate the others again with annotations.wav2vec2_dir set to it)")
    for record, where in found.values():
        if not same_encoder(record, encoder):
            raise ConfigError(f"data.shards' audio features were made by {describe(record)} (e.g. {where[0]}), but the "
                              f"model is built for {describe(encoder)}: set model.audio_encoder to the shards' encoder, "
                              "or curate them with this one")


def separate_like_the_shards(cfg: TrainConfig, metas: dict[str, Optional[schema.ClipMeta]]) -> TrainConfig:
    """The run's behaviour.separate_vocals follows how the shards' audio features were made, so generation
    feeds the model what training did: curated without a vocal separator (features of the mixture),
    exports record separate_vocals=false. An explicit model.behaviour.separate_vocals, shards of both kinds
    (a warning) or shards that say nothing leave the inherited behaviour as it is."""
    kinds = {meta.vocal_separator is not None for meta in metas.values() if meta is not None}
    if "separate_vocals" in cfg.model.behaviour or len(kinds) != 1:
        if len(kinds) > 1:
            log.warning("data.shards mix clips curated with and without vocal separation; set "
                        "model.behaviour.separate_vocals to say which generation should do")
        return cfg
    separated = kinds.pop()
    inherited = read_index(cfg.model.init_from).behaviour if cfg.model.init_from else ModelBehaviour()
    if separated == inherited.separate_vocals:
        return cfg
    log.info("data.shards were curated %s vocal separation: the exports record behaviour.separate_vocals=%s "
             "(set model.behaviour.separate_vocals to choose)", "with" if separated else "without",
             str(separated).lower())
    behaviour = {**cfg.model.behaviour, "separate_vocals": separated}
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, behaviour=behaviour))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _earlier_run(out: Path) -> str:
    """What an earlier run left in `out` ('' when nothing)."""
    steps = sorted(step_of(p.name) for p in (out / "checkpoints").glob("step-*") if TAG.match(p.name))
    if steps:
        return f"checkpoints up to step {steps[-1]}"
    return "an exported model (export/)" if (out / "export").exists() else ""


def check_resume(cfg: TrainConfig, out: Path) -> list[str]:
    """Refuse a resume under a config that changes results; returns the harmless changes, as text."""
    saved_path = out / CONFIG_FILE
    if not complete_tags(out / "checkpoints"):
        return []
    if not saved_path.is_file():
        log.warning("%s has checkpoints but no %s: cannot check that they were made with this config", out, CONFIG_FILE)
        return []
    saved = _flat(yaml.safe_load(saved_path.read_text()) or {})
    new, results = _flat(to_dict(cfg)), result_keys(cfg)
    both = set(saved) & set(new)
    changed = changed_keys({k: saved[k] for k in both}, {k: new[k] for k in both})
    refused = [k for k in changed if k in results]
    if refused:
        shown = "; ".join(f"{k}: {saved[k]!r} -> {new[k]!r}" for k in refused[:4])
        raise ConfigError(
            f"run.output_dir {out} holds checkpoints of a run with a different config ({shown}"
            f"{'; ...' if len(refused) > 4 else ''}): resume with the same values, choose another run.output_dir, "
            "or start over with run.resume=none run.overwrite=true")
    return [f"{k}: {saved[k]!r} -> {new[k]!r}" for k in changed]


def prepare_output(cfg: TrainConfig, rank: int) -> None:
    """Check (and, on rank 0, prepare) run.output_dir for this run; see the module docstring."""
    out = Path(cfg.run.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"config key 'run.output_dir': cannot create {out}: {err.strerror}") from err
    if not os.access(out, os.W_OK):
        raise ConfigError(f"config key 'run.output_dir': {out} is not writable")
    earlier = _earlier_run(out)
    if cfg.run.resume == "none" and earlier:
        if not cfg.run.overwrite:
            raise ConfigError(f"run.output_dir {out} holds an earlier run ({earlier}) and run.resume=none: resume it with "
                              "run.resume=latest, choose another run.output_dir, or set run.overwrite=true to delete it")
        if rank == 0:
            log.warning("run.overwrite=true: deleting the earlier run in %s (%s)", out, earlier)
            for name in RUN_OUTPUTS:
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if cfg.run.resume == "latest":
        for change in check_resume(cfg, out):
            log.info("resuming with a changed setting that does not change results: %s", change)
    if rank == 0:
        tmp = out / f".{CONFIG_FILE}.{os.getpid()}.tmp"
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        os.replace(tmp, out / CONFIG_FILE)


def preflight(stage: str, cfg: TrainConfig, rank: int | None = None) -> TrainConfig:
    """Every start-up check (ConfigError in one line); returns the config with a local model.pretrained_dir made
    absolute, model.init_from resolved to a folder and model.audio_encoder set to the encoder the model is built for."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    check_shards("data.shards", cfg.data.shards, required=True)
    check_shards("data.validation_shards", cfg.data.validation_shards, required=False)
    deepspeed_json(cfg)
    check_devices(cfg)
    base = check_bases(stage, cfg)
    init_from = cfg.model.init_from
    if stage == "stage2" and not init_from:
        raise ConfigError("config key 'model.init_from' is not set: stage 2 starts from stage 1's export "
                          "(run.output_dir of stage 1 + /export)")
    if init_from:
        init_from = str(check_weights_folder(init_from, "model.init_from", bases=False))
    # A local base is recorded by its absolute path; an object URL or a hub id stays as given, so that exports
    # name their bases where any machine finds them (not by this machine's mirror or cache).
    pretrained_dir = str(base) if Path(cfg.model.pretrained_dir).expanduser().exists() else cfg.model.pretrained_dir
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained_dir=pretrained_dir, init_from=init_from))
    encoder_name, encoder = run_encoder(cfg, base, init_from)
    metas = shard_metas(expand_shards([*cfg.data.shards, *cfg.data.validation_shards]))
    check_audio_encoder(metas, encoder)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, audio_encoder=encoder_name))
    cfg = separate_like_the_shards(cfg, metas)
    check_cache(cfg)  # a missing or foreign latent cache: one line now, not a traceback from a worker
    prepare_output(cfg, rank)
    return cfg
