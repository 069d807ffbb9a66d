"""Orchestration: Ray scheduling of curation and training, job submission, the demo and the README tables."""
