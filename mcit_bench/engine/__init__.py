"""The run engine: the runner (task loop), the Lightning module that learns, evaluation, progress, divergence and signal handling."""
