"""The latent-cache command moved into its package: `python -m training.latent_cache` / `hallo-cache-latents`."""
import sys

if __name__ == "__main__":
    print("error: `python -m training.cache_latents` moved: use `python -m training.latent_cache` or "
          "`hallo-cache-latents` (docs/training.md, Latent cache)", file=sys.stderr)
    sys.exit(2)
