"""Foundations shared by curation, training and generation, importing none of them: the typed config
system, media I/O, face analysis and crop geometry, region masks, audio features, identity embedding
and the shard sample schema. Layers import one way: orchestration -> training -> model, curation ->
foundation; only entry points (curation/run.py, training/latent_cache/cli.py) reach up to the
orchestration that schedules their work.
"""
