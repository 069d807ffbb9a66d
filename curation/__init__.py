"""Curation: wild talking-head video -> face-cropped clips in WebDataset shards + a Parquet manifest.

The data path, one module per step: sources -> download -> media -> scenes -> faces -> quality ->
clips -> export -> shards, with `pipeline.process_source` chaining them for one source and
`orchestration.curation_job` scheduling sources on Ray.
"""
