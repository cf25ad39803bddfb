"""Hyper-parameter tuning: the Optuna study (study.py), its search space, the tuned-values file and the report."""
