"""The latent cache: every frame's VAE latent distribution, computed once per curated dataset.

format.py  what a cache shard holds, and the VAE identity it is checked against
encode.py  one curated shard -> one cache shard (free of Ray)
read.py    training on the cache: a sample's latents, the target draw, the checks before a run
cli.py     the command `hallo-cache-latents` / `python -m training.latent_cache`; its Ray scheduling
           is orchestration/latent_cache_job.py
"""
