"""Orchestration: the config system and Ray scheduling of curation and training."""
