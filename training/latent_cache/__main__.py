"""`python -m training.latent_cache`: the command of cli.py."""
import sys

from training.latent_cache.cli import main

sys.exit(main())
