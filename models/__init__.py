"""The library of the pipeline: pure, typed functions and small records, no Prefect.

Subpackages follow the data path, and each imports only from the ones before it:

    prices    calendar, sources (sample, folder, yfinance), validation, the price store, ingest
    dataset   features, labels, normalization, windows, dataset build, leakage audit
    training  network, guards, training loop, metrics, baselines, gate, evaluation
    registry  bundles, local and object-store registries, predictor, smoke test, report,
              publication, and the `python -m models` CLI

`config`, `diagnosis` and `errors` are the shared base: every subpackage may import them, and they
import none. Nothing here imports prefect, `tasks` or `flows` (tests/unit/test_layout.py checks).
"""
