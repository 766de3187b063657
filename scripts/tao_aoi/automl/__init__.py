"""Hyper-parameter search on Optuna: the study and its search space."""
