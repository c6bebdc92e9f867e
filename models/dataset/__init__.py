"""From stored prices to an audited dataset: features, labels, splits, train-only stats, windows.

Imports `models.prices` and the shared base; never training or the registry.
"""
