"""The run folder's safety: atomic writes, sealed JSON, checkpoints, resume checks and the run lock."""
