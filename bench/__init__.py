"""Benchmarks of retrain_assets against bare pandas + scikit-learn; run with `make bench` (see run.py)."""
