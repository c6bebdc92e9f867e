"""The model and its judgement: network, guards, training loop, metrics, baselines, gate, evaluation.

Imports `models.dataset`, `models.prices` and the shared base; never the registry.
"""
