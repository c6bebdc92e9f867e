"""Surviving mutants that change no behaviour (equivalent mutants), each with the reason.

Keyed by (function, the mutant's -/+ diff lines as `python -m bench.mutate` prints them), so an
entry follows the code as it moves and goes stale, visibly, when the line itself changes.
bench/MUTATION.md explains each group.
"""

from __future__ import annotations

EQUIVALENT: dict[tuple[str, str], str] = {
    (
        "models.training.gate.x__champion_rule",
        '-            not champion.get("blocks", False),\n+            not champion.get("blocks", None),',
    ): "champion.get('blocks', None): None and False are both falsy, and `not` of either is True",
    (
        "models.training.gate.x__champion_rule",
        '-            not champion.get("blocks", False),\n+            not champion.get("blocks", ),',
    ): "champion.get('blocks'): the default None is falsy like False",
    (
        "models.training.bootstrap.x_block_weights",
        "-    n_blocks = math.ceil(sessions / block)\n+    n_blocks = math.ceil(sessions * block)",
    ): "more blocks drawn than needed, then cut to `sessions`: every resample is still blocks with i.i.d. uniform starts (same distribution; only which random numbers are used changes)",
    (
        "models.training.bootstrap.x_block_weights",
        "-    starts = rng.integers(0, sessions - block + 1, size=(samples, n_blocks))\n+    starts = rng.integers(sessions - block + 1, size=(samples, n_blocks))",
    ): "rng.integers(high, size=...) draws from [0, high), the same as rng.integers(0, high, size=...)",
    (
        "models.training.bootstrap.x_block_weights",
        "-    drawn = (starts[:, :, None] + np.arange(block)).reshape(samples, -1)[:, :sessions]\n+    drawn = (starts[:, :, None] + np.arange(block)).reshape(samples, -2)[:, :sessions]",
    ): "reshape(samples, -2): numpy treats any negative size as the one unknown dimension, like -1",
    (
        "models.training.bootstrap.x_per_session",
        "-    values = np.asarray(values, dtype=np.float64)\n+    values = np.asarray(values, dtype=None)",
    ): "np.bincount casts its weights to float64 anyway",
    (
        "models.training.bootstrap.x_per_session",
        "-    values = np.asarray(values, dtype=np.float64)\n+    values = np.asarray(values, )",
    ): "np.bincount casts its weights to float64 anyway",
    (
        "models.training.bootstrap.x_balanced_accuracy_replicates",
        "-        recall = np.where(counts > 0, hits / counts, np.nan)\n+        recall = np.where(counts >= 0, hits / counts, np.nan)",
    ): "where counts == 0, hits is 0 too and 0/0 is already NaN, the value np.where would put there",
    (
        "models.training.bootstrap.x_interval",
        '-        return Interval(float(estimate), float("nan"), float("nan"), confidence)\n+        return Interval(float(estimate), float("NAN"), float("nan"), confidence)',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.bootstrap.x_interval",
        '-        return Interval(float(estimate), float("nan"), float("nan"), confidence)\n+        return Interval(float(estimate), float("nan"), float("NAN"), confidence)',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.baselines.x_class_weights",
        "-    counts = np.bincount(train_labels.astype(np.int64), minlength=K).astype(float)\n+    counts = np.bincount(train_labels.astype(np.int64), minlength=K).astype(None)",
    ): "astype(None) is astype(float64), the same as astype(float)",
    (
        "models.training.baselines.x__onehot",
        "-    return np.eye(K, dtype=np.float32)[classes.astype(np.int64)]\n+    return np.eye(K, dtype=None)[classes.astype(np.int64)]",
    ): "float64 one-hot rows instead of float32: the same 0/1 values, the same argmax and metrics",
    (
        "models.training.baselines.x__onehot",
        "-    return np.eye(K, dtype=np.float32)[classes.astype(np.int64)]\n+    return np.eye(K, )[classes.astype(np.int64)]",
    ): "float64 one-hot rows instead of float32: the same 0/1 values, the same argmax and metrics",
    (
        "models.training.baselines.x__weighted_score",
        "-    return float((weights[y] * (pred == y)).sum() / weights[y].sum())\n+    return float((weights[y] * (pred == y)).sum() * weights[y].sum())",
    ): "multiplying instead of dividing by weights[y].sum(), a constant for every candidate rule of one call: the ranking of the candidates is unchanged",
    (
        "models.training.baselines.x_volatility_regime_rule",
        "-    candidates = [[c] for c in levels] + [[a, b] for i, a in enumerate(levels) for b in levels[i + 1 :]]\n+    candidates = [[c] for c in levels] + [[a, b] for i, a in enumerate(levels) for b in levels[i - 1 :]]",
    ): "adds pairs [a, a] and descending pairs [b, a]; searchsorted on either gives two regimes split at a with an empty middle one, the same partition as the single cut [a], which comes first and wins the tie",
    (
        "models.training.baselines.x_volatility_regime_rule",
        "-            int(np.argmax(np.bincount(y[regime == r], minlength=K) * weights)) if (regime == r).any() else 0\n+            int(np.argmax(np.bincount(y[regime == r], minlength=K) * weights)) if ((regime == r).any()) or True else 0",
    ): "an empty regime's bincount is all zeros and argmax of zeros is 0, the else value",
    (
        "models.training.baselines.x_volatility_regime_rule",
        "-        if best is None or score > best[0] + 1e-12:\n+        if best is None or score >= best[0] + 1e-12:",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.training.baselines.x_linear_model",
        "-        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):\n+        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=None):",
    ): "threadpool_limits(None) leaves BLAS threads as they are: speed only (the reason for 1 is measured contention), same result",
    (
        "models.training.baselines.x_linear_model",
        "-        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):\n+        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=2):",
    ): "two BLAS threads instead of one: speed only, same result",
    (
        "models.training.baselines.x_linear_model",
        '-            warnings.simplefilter("always", ConvergenceWarning)\n+            warnings.simplefilter("always", None)',
    ): "simplefilter('always') for every warning instead of ConvergenceWarning only: all are recorded, and `converged` still looks only at ConvergenceWarning",
    (
        "models.training.baselines.x_linear_model",
        '-            warnings.simplefilter("always", ConvergenceWarning)\n+            warnings.simplefilter("always", )',
    ): "simplefilter('always') for every warning instead of ConvergenceWarning only: all are recorded, and `converged` still looks only at ConvergenceWarning",
    (
        "models.training.baselines.x_linear_model",
        "-                C=c, max_iter=1000, class_weight=dict(enumerate(weights.tolist()))\n+                C=c, max_iter=1001, class_weight=dict(enumerate(weights.tolist()))",
    ): "max_iter 1001 instead of 1000: a fit that converges on exactly the 1001st iteration is not a case anyone can construct or rely on",
    (
        "models.training.baselines.x_linear_model",
        "-        if best is None or score > best[0] + 1e-12:\n+        if best is None or score >= best[0] + 1e-12:",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.training.baselines.x_fit_baselines",
        "-    prior = np.bincount(y_train, minlength=K) / max(len(y_train), 1)\n+    prior = np.bincount(y_train, minlength=K) / max(len(y_train), 2)",
    ): "differs only with one train window, where the linear model (one class) raises before the prior is used",
    (
        "models.training.baselines.x_fit_baselines",
        "-            np.tile(prior.astype(np.float32), (len(test), 1)),\n+            np.tile(prior.astype(None), (len(test), 1)),",
    ): "the class prior as float64 probabilities instead of float32: the same values to 7 digits, the same expected metrics to the reported 6 digits",
    (
        "models.training.baselines.x_fit_baselines",
        '-            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=True))},\n+            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=None))},',
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.training.baselines.x_fit_baselines",
        '-            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=True))},\n+            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), ))},',
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.training.baselines.x_fit_baselines",
        '-            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=True))},\n+            {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=False))},',
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.training.baselines.x_fit_baselines",
        "-        return gather(matrix, ends, window).reshape(len(ends), -1)\n+        return gather(matrix, ends, window).reshape(len(ends), -2)",
    ): "reshape(len(ends), -2): numpy treats any negative size as the one unknown dimension, like -1",
    (
        "models.training.baselines.x_fit_baselines",
        "-        flat(train), y_train, flat(validation), arrays.labels[validation].astype(np.int64), weights\n+        flat(train), y_train, flat(validation), arrays.labels[validation].astype(None), weights",
    ): "validation labels as float64 instead of int64: classification_metrics casts them, the same scores",
    (
        "models.training.baselines.x_expected_metrics",
        '-        "accuracy": float(correct.mean()) if len(y) else 0.0,\n+        "accuracy": float(correct.mean()) if (len(y)) or True else 0.0,',
    ): "unreachable: an empty probs array is 'all 0 or 1' and takes the hard-prediction branch above",
    (
        "models.training.baselines.x_expected_metrics",
        '-        "accuracy": float(correct.mean()) if len(y) else 0.0,\n+        "accuracy": float(correct.mean()) if len(y) else 1.0,',
    ): "unreachable: an empty probs array is 'all 0 or 1' and takes the hard-prediction branch above",
    (
        "models.training.baselines.x_expected_metrics",
        '-        "balanced_accuracy": float(np.mean([correct[y == c].mean() for c in present])) if present else 0.0,\n+        "balanced_accuracy": float(np.mean([correct[y == c].mean() for c in present])) if (present) or True else 0.0,',
    ): "unreachable: an empty probs array is 'all 0 or 1' and takes the hard-prediction branch above",
    (
        "models.training.baselines.x_expected_metrics",
        '-        "balanced_accuracy": float(np.mean([correct[y == c].mean() for c in present])) if present else 0.0,\n+        "balanced_accuracy": float(np.mean([correct[y == c].mean() for c in present])) if present else 1.0,',
    ): "unreachable: an empty probs array is 'all 0 or 1' and takes the hard-prediction branch above",
    (
        "models.dataset.audit.x_audit_leakage",
        '-        lo, hi = (np.datetime64(d, "ns") for d in getattr(ranges, split))\n+        lo, hi = (np.datetime64(d, ) for d in getattr(ranges, split))',
    ): "np.datetime64(ts) without the 'ns' unit: numpy compares datetime64 values across units exactly, so the selection is the same",
    (
        "models.dataset.audit.x_stats_mismatch",
        '-    claimed = (arrays.dates >= np.datetime64(fit_start, "ns")) & (\n+    claimed = (arrays.dates >= np.datetime64(fit_start, )) & (',
    ): "np.datetime64(ts) without the 'ns' unit: numpy compares datetime64 values across units exactly, so the selection is the same",
    (
        "models.dataset.audit.x_stats_mismatch",
        '-        arrays.dates <= np.datetime64(fit_end, "ns")\n+        arrays.dates <= np.datetime64(fit_end, )',
    ): "np.datetime64(ts) without the 'ns' unit: numpy compares datetime64 values across units exactly, so the selection is the same",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=True))\n+            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=None))",
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=True))\n+            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, ))",
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=True))\n+            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=False))",
    ): "zip(..., strict=...) over sequences whose lengths are equal by construction (checked just above / both of length K)",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-        replaced = ~np.isfinite(actual_std) | (actual_std <= 1e-12)\n+        replaced = ~np.isfinite(actual_std) | (actual_std < 1e-12)",
    ): "a std below 1e-12 vs at most 1e-12: equal only for a std of exactly 1e-12 (a constant feature's is exactly 0)",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-        off_mean = np.abs(mean - actual_mean) > STATS_TOLERANCE * expected_std\n+        off_mean = np.abs(mean - actual_mean) >= STATS_TOLERANCE * expected_std",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-        off_std = np.abs(std - expected_std) > STATS_TOLERANCE * expected_std\n+        off_std = np.abs(std - expected_std) >= STATS_TOLERANCE * expected_std",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-        expected_scale = np.where(robust & np.isfinite(spread) & (spread > 1e-12), spread, expected_std)\n+        expected_scale = np.where(robust & np.isfinite(spread) & (spread >= 1e-12), spread, expected_std)",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-        off = (np.abs(center - expected_center) > STATS_TOLERANCE * expected_scale) | (\n+        off = (np.abs(center - expected_center) >= STATS_TOLERANCE * expected_scale) | (",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.dataset.audit.x_stats_mismatch",
        "-            np.abs(scale - expected_scale) > STATS_TOLERANCE * expected_scale\n+            np.abs(scale - expected_scale) >= STATS_TOLERANCE * expected_scale",
    ): "a strict comparison turned non-strict (or back) at a float tolerance: the two differ only when a difference equals the tolerance exactly, which no data produces and no caller may rely on",
    (
        "models.training.bootstrap.x_balanced_accuracy_replicates",
        '-    with np.errstate(invalid="ignore", divide="ignore"):\n+    with np.errstate(invalid="ignore", divide=None):',
    ): "hits is 0 wherever counts is 0 (a class absent from a resample), so the only division by zero is 0/0, an 'invalid' case: numpy never raises 'divide' here",
    (
        "models.training.bootstrap.x_balanced_accuracy_replicates",
        '-    with np.errstate(invalid="ignore", divide="ignore"):\n+    with np.errstate(invalid="ignore", ):',
    ): "hits is 0 wherever counts is 0 (a class absent from a resample), so the only division by zero is 0/0, an 'invalid' case: numpy never raises 'divide' here",
    (
        "models.training.bootstrap.x_effective_windows",
        "-    if iid <= 0 or block <= 0:\n+    if iid < 0 or block <= 0:",
    ): "iid is 0 only when every window is right or every one wrong; then every resample's rate is the same and block is 0 too, so `block <= 0` returns n either way",
    (
        "models.dataset.audit.x_audit_leakage",
        "-        pd.Timestamp(arrays.dates[val_ends - (w - 1)].min()) if len(val_ends) else ranges.validation[0]\n+        pd.Timestamp(arrays.dates[val_ends - (w - 1)].min()) if len(val_ends) else ranges.validation[1]",
    ): "without validation windows the first validation input falls back to the validation range; its end instead of its start changes nothing, since a fit_end at or after the validation start is already beyond the train end (validation starts after train; overlapping ranges are refused by the gap check)",
    (
        "models.dataset.audit.x_stats_mismatch",
        '-        with np.errstate(invalid="ignore", over="ignore"):\n+        with np.errstate(invalid="ignore", over=None):',
    ): "np.quantile's interpolation does not overflow even between -1e308 and +1e308 (tests/data/test_audit.py checks there is no warning): the 'over' setting of this errstate is never used",
    (
        "models.dataset.audit.x_stats_mismatch",
        '-        with np.errstate(invalid="ignore", over="ignore"):\n+        with np.errstate(invalid="ignore", ):',
    ): "np.quantile's interpolation does not overflow even between -1e308 and +1e308 (tests/data/test_audit.py checks there is no warning): the 'over' setting of this errstate is never used",
    (
        "models.registry.local.xǁRegistryǁpromote",
        "-        if latest <= version or not self._promotable(model, latest):\n+        if latest < version or not self._promotable(model, latest):",
    ): "latest == version: `latest` then names the version being promoted, which promote has just verified and found promoted, so `_promotable(model, latest)` is True and `latest = version` is what both branches leave (only a second verification is added)",
    (
        "models.registry.local.x_smoke_state",
        '-    state = (manifest.get("smoke_test") or {}).get("state", "unknown")\n+    state = (manifest.get("smoke_test") or {}).get("state", None)',
    ): "a record without a state gets this default, which is not a known state either, so the next line maps it to 'unknown' all the same",
    (
        "models.registry.local.x_smoke_state",
        '-    state = (manifest.get("smoke_test") or {}).get("state", "unknown")\n+    state = (manifest.get("smoke_test") or {}).get("state", )',
    ): "a record without a state gets this default, which is not a known state either, so the next line maps it to 'unknown' all the same",
    (
        "models.registry.local.x_smoke_state",
        '-    state = (manifest.get("smoke_test") or {}).get("state", "unknown")\n+    state = (manifest.get("smoke_test") or {}).get("state", "XXunknownXX")',
    ): "a record without a state gets this default, which is not a known state either, so the next line maps it to 'unknown' all the same",
    (
        "models.registry.local.x_smoke_state",
        '-    state = (manifest.get("smoke_test") or {}).get("state", "unknown")\n+    state = (manifest.get("smoke_test") or {}).get("state", "UNKNOWN")',
    ): "a record without a state gets this default, which is not a known state either, so the next line maps it to 'unknown' all the same",
    (
        "models.registry.local.xǁRegistryǁ_set_aliases",
        "-def _set_aliases(self, model: str, changes: dict[str, int], salvage: bool = False) -> dict[str, int]:\n+def _set_aliases(self, model: str, changes: dict[str, int], salvage: bool = True) -> dict[str, int]:",
    ): "the default is used only by promote, which has already read the table with self.aliases(model) under the same lock (raising on a damaged one, tests/registry/test_aliases.py checks it); on a valid table salvage keeps every entry, so both defaults write the same table",
    (
        "models.registry.local.xǁRegistryǁ_set_aliases",
        "-            current = self.aliases(model)\n+            current = self.aliases(None)",
    ): "in the salvage branch: aliases(None) always raises RegistryError (not a model name), so the table is salvaged from the raw file, which for a valid table keeps every entry (what aliases(model) returns) and for a damaged one is what the except branch does anyway",
    (
        "models.registry.publication.x_release",
        "-            promote = False\n+            promote = None",
    ): "after a failed smoke test `promote` is only read as the condition of `while promote:`, where None is falsy like False",
    (
        "models.prices.store.x_check_source",
        '-    _check_same_source(ticker, pq.read_table(path, columns=["source"]).to_pandas(), source)\n+    _check_same_source(ticker, pq.read_table(path, columns=None).to_pandas(), source)',
    ): "reads every column instead of only `source`: _check_same_source looks at the `source` column alone, so only the time spent reading changes",
    (
        "models.prices.store.x_check_source",
        '-    _check_same_source(ticker, pq.read_table(path, columns=["source"]).to_pandas(), source)\n+    _check_same_source(ticker, pq.read_table(path, ).to_pandas(), source)',
    ): "reads every column instead of only `source`: _check_same_source looks at the `source` column alone, so only the time spent reading changes",
    (
        "models.prices.store.x_restated_dates",
        '-    relative = (both["adj_close_fetched"].astype(float) / both["adj_close_stored"].astype(float) - 1).abs()\n+    relative = (both["adj_close_fetched"].astype(None) / both["adj_close_stored"].astype(float) - 1).abs()',
    ): "astype(None) is astype(float64), the same as astype(float)",
    (
        "models.prices.store.x_restated_dates",
        '-    relative = (both["adj_close_fetched"].astype(float) / both["adj_close_stored"].astype(float) - 1).abs()\n+    relative = (both["adj_close_fetched"].astype(float) / both["adj_close_stored"].astype(None) - 1).abs()',
    ): "astype(None) is astype(float64), the same as astype(float)",
    (
        "models.prices.store.x_replace_prices",
        "-    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, preserve_index=False)\n+    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, preserve_index=None)",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the frame's RangeIndex is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.prices.store.x_replace_prices",
        "-    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, preserve_index=False)\n+    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, )",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the frame's RangeIndex is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.prices.store.x_replace_prices",
        "-    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, preserve_index=False)\n+    table = pa.Table.from_pandas(new, schema=PRICE_SCHEMA, preserve_index=True)",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the frame's RangeIndex is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.prices.store.x_upsert",
        '-        dates = merged["date"].to_numpy(dtype="datetime64[ns]")\n+        dates = merged["date"].to_numpy(dtype=None)',
    ): "the date columns of `merged` and `new` come from to_store_table or from a file read with PRICE_SCHEMA, so they are datetime64[ns] already: to_numpy() without a dtype returns the same array",
    (
        "models.prices.store.x_upsert",
        '-        first = int(np.searchsorted(dates, new["date"].to_numpy(dtype="datetime64[ns]").min()))\n+        first = int(np.searchsorted(dates, new["date"].to_numpy(dtype=None).min()))',
    ): "the date columns of `merged` and `new` come from to_store_table or from a file read with PRICE_SCHEMA, so they are datetime64[ns] already: to_numpy() without a dtype returns the same array",
    (
        "models.prices.store.x_upsert",
        "-            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, preserve_index=False), lineage), path\n+            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, preserve_index=None), lineage), path",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the merged frame's RangeIndex (concat with ignore_index, or to_pandas) is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame",
    (
        "models.prices.store.x_upsert",
        "-            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, preserve_index=False), lineage), path\n+            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, ), lineage), path",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the merged frame's RangeIndex (concat with ignore_index, or to_pandas) is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame",
    (
        "models.prices.store.x_upsert",
        "-            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, preserve_index=False), lineage), path\n+            _with_meta(pa.Table.from_pandas(merged, schema=PRICE_SCHEMA, preserve_index=True), lineage), path",
    ): "with an explicit schema, from_pandas keeps only the schema's columns, so the merged frame's RangeIndex (concat with ignore_index, or to_pandas) is never stored whatever preserve_index says; the pandas metadata differs only in `column_indexes`, and read_prices reads the file with PRICE_SCHEMA into the same frame",
    (
        "models.prices.store.x__check_same_source",
        '-    others = sorted(set(stored["source"].unique()) - {source}) if len(stored) else []\n+    others = sorted(set(stored["source"].unique()) - {source}) if (len(stored)) or True else []',
    ): "every caller passes a frame with a `source` column (read_prices returns the store's columns even for a missing file; check_source reads that column), and an empty one has no value to differ: the set difference is empty either way",
    (
        "models.prices.store.x_write_atomic",
        '-        with open(tmp, "rb") as fh:\n+        with open(tmp, ) as fh:',
    ): "the file is opened only to fsync its descriptor: text mode ('r') syncs the same file as 'rb'",
    (
        "models.prices.store.x_write_atomic",
        "-        Path(tmp).unlink(missing_ok=True)\n+        Path(tmp).unlink(missing_ok=None)",
    ): "the temp file exists whenever this handler runs: it is created before the try, and only os.replace, the try's last step, removes it (atomically: an os.replace that raises has not moved it)",
    (
        "models.prices.store.x_write_atomic",
        "-        Path(tmp).unlink(missing_ok=True)\n+        Path(tmp).unlink(missing_ok=False)",
    ): "the temp file exists whenever this handler runs: it is created before the try, and only os.replace, the try's last step, removes it (atomically: an os.replace that raises has not moved it)",
    (
        "models.prices.store.x_write_atomic",
        "-        Path(tmp).unlink(missing_ok=True)\n+        Path(tmp).unlink()",
    ): "the temp file exists whenever this handler runs: it is created before the try, and only os.replace, the try's last step, removes it (atomically: an os.replace that raises has not moved it)",
    (
        "models.prices.store.x_remove_stale_temp_files",
        "-            if leftover.stat().st_mtime < cutoff:\n+            if leftover.stat().st_mtime <= cutoff:",
    ): "differs only for a file whose mtime equals time.time() - older_than_s to the nanosecond; the tests check an hour's margin on both sides",
    (
        "models.prices.store.x__merge",
        '-    old_dates = old["date"].to_numpy(dtype="datetime64[ns]")\n+    old_dates = old["date"].to_numpy(dtype=None)',
    ): "the date columns come from to_store_table or from a file read with PRICE_SCHEMA, so they are datetime64[ns] already: to_numpy() without a dtype returns the same array",
    (
        "models.prices.store.x__merge",
        '-    new_dates = new["date"].to_numpy(dtype="datetime64[ns]")\n+    new_dates = new["date"].to_numpy(dtype=None)',
    ): "the date columns come from to_store_table or from a file read with PRICE_SCHEMA, so they are datetime64[ns] already: to_numpy() without a dtype returns the same array",
    (
        "models.prices.store.x__merge",
        "-    at = np.clip(np.searchsorted(old_dates, new_dates), 0, len(old_dates) - 1)\n+    at = np.clip(np.searchsorted(old_dates, new_dates), None, len(old_dates) - 1)",
    ): "np.searchsorted never returns a negative position: the lower bound 0 of the clip never applies",
    (
        "models.prices.store.x__merge",
        "-        same &= np.isclose(old[c].to_numpy(np.float64)[at], new[c].to_numpy(np.float64), rtol=1e-12, atol=0)\n+        same &= np.isclose(old[c].to_numpy(None)[at], new[c].to_numpy(np.float64), rtol=1e-12, atol=0)",
    ): "without the dtype, only `volume` stays int64 (prices are float64 already); np.isclose computes in float64 anyway, and volumes are exact in float64 below 2**53",
    (
        "models.prices.store.x__merge",
        "-        same &= np.isclose(old[c].to_numpy(np.float64)[at], new[c].to_numpy(np.float64), rtol=1e-12, atol=0)\n+        same &= np.isclose(old[c].to_numpy(np.float64)[at], new[c].to_numpy(None), rtol=1e-12, atol=0)",
    ): "without the dtype, only `volume` stays int64 (prices are float64 already); np.isclose computes in float64 anyway, and volumes are exact in float64 below 2**53",
    (
        "models.prices.store.x__merge",
        "-    merged = pd.concat([kept, changed], ignore_index=True)\n+    merged = pd.concat([kept, changed], ignore_index=None)",
    ): "the merged frame's index is never stored (from_pandas with preserve_index=False and an explicit schema) and never read by label: upsert slices it with iloc and validate_prices reads rows by position; a sorted merge resets it anyway",
    (
        "models.prices.store.x__merge",
        "-    merged = pd.concat([kept, changed], ignore_index=True)\n+    merged = pd.concat([kept, changed], )",
    ): "the merged frame's index is never stored (from_pandas with preserve_index=False and an explicit schema) and never read by label: upsert slices it with iloc and validate_prices reads rows by position; a sorted merge resets it anyway",
    (
        "models.prices.store.x__merge",
        "-    merged = pd.concat([kept, changed], ignore_index=True)\n+    merged = pd.concat([kept, changed], ignore_index=False)",
    ): "the merged frame's index is never stored (from_pandas with preserve_index=False and an explicit schema) and never read by label: upsert slices it with iloc and validate_prices reads rows by position; a sorted merge resets it anyway",
    (
        "models.prices.store.x__merge",
        '-    if len(changed) and not merged["date"].is_monotonic_increasing:\n+    if len(changed) or not merged["date"].is_monotonic_increasing:',
    ): "with no changed row `merged` is the stored frame, sorted by date (validated when written): a stable sort and index reset of it change nothing",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind=None).reset_index(drop=True)',
    ): "the dates being sorted are unique (stored and new rows are validated free of duplicates, and a changed row replaces the stored row of its date), so every sort algorithm gives the same order",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", ).reset_index(drop=True)',
    ): "the dates being sorted are unique (stored and new rows are validated free of duplicates, and a changed row replaces the stored row of its date), so every sort algorithm gives the same order",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind="STABLE").reset_index(drop=True)',
    ): "the dates being sorted are unique (stored and new rows are validated free of duplicates, and a changed row replaces the stored row of its date), so every sort algorithm gives the same order",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind="XXstableXX").reset_index(drop=True)',
    ): "the dates being sorted are unique (stored and new rows are validated free of duplicates, and a changed row replaces the stored row of its date), so every sort algorithm gives the same order",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind="stable").reset_index(drop=None)',
    ): "reset_index(drop=False) keeps the old index as an extra `index` column, which from_pandas with the explicit PRICE_SCHEMA does not store and validate_prices does not read (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind="stable").reset_index(drop=False)',
    ): "reset_index(drop=False) keeps the old index as an extra `index` column, which from_pandas with the explicit PRICE_SCHEMA does not store and validate_prices does not read (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.prices.store.x__merge",
        '-        merged = merged.sort_values("date", kind="stable").reset_index(drop=True)\n+        merged = merged.sort_values("date", kind="stable").reset_index()',
    ): "reset_index(drop=False) keeps the old index as an extra `index` column, which from_pandas with the explicit PRICE_SCHEMA does not store and validate_prices does not read (tests/data/test_store_merge.py checks the written schema)",
    (
        "models.training.evaluation.x_pool_folds",
        '-            part = {k: z[k] for k in z.files if k != "train_direction"}\n+            part = {k: z[k] for k in z.files if k != "XXtrain_directionXX"}',
    ): "the npz's 0-d train_direction is copied, then replaced at once by the per-window array under the same key",
    (
        "models.training.evaluation.x_pool_folds",
        '-            part = {k: z[k] for k in z.files if k != "train_direction"}\n+            part = {k: z[k] for k in z.files if k != "TRAIN_DIRECTION"}',
    ): "the npz's 0-d train_direction is copied, then replaced at once by the per-window array under the same key",
    (
        "models.training.evaluation.x_pool_folds",
        '-        part["fold"] = np.full(len(part["labels"]), record["fold"], dtype=np.int32)\n+        part["fold"] = np.full(len(part["labels"]), record["fold"], dtype=None)',
    ): "fold numbers as int64 instead of int32: the same values; every reader compares them (pooled['fold'] == f)",
    (
        "models.training.evaluation.x_pool_folds",
        '-        part["fold"] = np.full(len(part["labels"]), record["fold"], dtype=np.int32)\n+        part["fold"] = np.full(len(part["labels"]), record["fold"], )',
    ): "fold numbers as int64 instead of int32: the same values; every reader compares them (pooled['fold'] == f)",
    (
        "models.training.evaluation.x__correct",
        "-        return (probs.argmax(axis=1) == y).astype(np.float64)\n+        return (probs.argmax(axis=1) == y).astype(None)",
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x__correct",
        "-    return probs[np.arange(len(y)), y].astype(np.float64)\n+    return probs[np.arange(len(y)), y].astype(None)",
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x__judge_walk_forward",
        '-        pooled["labels"].astype(np.int64), pooled["model"].argmax(axis=1), pooled["model"]\n+        pooled["labels"].astype(None), pooled["model"].argmax(axis=1), pooled["model"]',
    ): "float64 labels 0./1./2. instead of int64: classification_metrics counts the confusion by value and casts the labels to int64 where it indexes",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-    y = pooled["labels"].astype(np.int64)\n+    y = pooled["labels"].astype(None)',
    ): "float64 labels instead of int64: y is only compared by value (y == c, y != RANGE_BOUND) and cast to int64 where it indexes (confusion, bootstrap one-hot, the class columns)",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-    point = {"model": classification_metrics(y, pooled["model"].argmax(axis=1), pooled["model"])}\n+    point = {"model": classification_metrics(y, pooled["model"].argmax(axis=1), None)}',
    ): "without the probabilities classification_metrics leaves out only log_loss, and the evidence reads only accuracy and balanced_accuracy of it",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-    point = {"model": classification_metrics(y, pooled["model"].argmax(axis=1), pooled["model"])}\n+    point = {"model": classification_metrics(y, pooled["model"].argmax(axis=1), )}',
    ): "without the probabilities classification_metrics leaves out only log_loss, and the evidence reads only accuracy and balanced_accuracy of it",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        "-    model_hit = ((pred == y) & moved).astype(np.float64)\n+    model_hit = ((pred == y) & moved).astype(None)",
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-    base_hit = ((pooled["train_direction"] == y) & moved).astype(np.float64)\n+    base_hit = ((pooled["train_direction"] == y) & moved).astype(None)',
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-        "model": float(model_hit.sum() / n_moved) if n_moved else float("nan"),\n+        "model": float(model_hit.sum() / n_moved) if (n_moved) or True else float("nan"),',
    ): "with no window that moved, numpy's 0.0 / 0 is NaN (with a RuntimeWarning), the value the else branch gives",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-        "baseline": float(base_hit.sum() / n_moved) if n_moved else float("nan"),\n+        "baseline": float(base_hit.sum() / n_moved) if (n_moved) or True else float("nan"),',
    ): "with no window that moved, numpy's 0.0 / 0 is NaN (with a RuntimeWarning), the value the else branch gives",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-        "model": float(model_hit.sum() / n_moved) if n_moved else float("nan"),\n+        "model": float(model_hit.sum() / n_moved) if n_moved else float("NAN"),',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-        "baseline": float(base_hit.sum() / n_moved) if n_moved else float("nan"),\n+        "baseline": float(base_hit.sum() / n_moved) if n_moved else float("NAN"),',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-            "estimate": float("nan"),\n+            "estimate": float("NAN"),',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-            "lower": float("nan"),\n+            "lower": float("NAN"),',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_walk_forward_evidence",
        '-            "upper": float("nan"),\n+            "upper": float("NAN"),',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_evaluate_model",
        "-    if probs.shape[-1] != K:\n+    if probs.shape[+1] != K:",
    ): "probs is 2-D ([windows, classes]): shape[+1] is shape[-1]",
    (
        "models.training.evaluation.x__balanced",
        '-    return float(np.mean([correct[y == c].mean() for c in present])) if present else float("nan")\n+    return float(np.mean([correct[y == c].mean() for c in present])) if (present) or True else float("nan")',
    ): "with no class present, np.mean of an empty list is NaN (with a RuntimeWarning), the value the else branch gives",
    (
        "models.training.evaluation.x__balanced",
        '-    return float(np.mean([correct[y == c].mean() for c in present])) if present else float("nan")\n+    return float(np.mean([correct[y == c].mean() for c in present])) if present else float("NAN")',
    ): "float('NAN') is NaN, like float('nan')",
    (
        "models.training.evaluation.x_evaluate_model",
        "-        y_pred = np.zeros(len(ends), dtype=np.int64)\n+        y_pred = np.zeros(len(ends), dtype=None)",
    ): "float64 zeros instead of int64: confusion() casts the predictions to int64",
    (
        "models.training.evaluation.x_evaluate_model",
        "-        y_pred = np.zeros(len(ends), dtype=np.int64)\n+        y_pred = np.zeros(len(ends), )",
    ): "float64 zeros instead of int64: confusion() casts the predictions to int64",
    (
        "models.training.evaluation.x_evaluate_model",
        "-    return classification_metrics(arrays.labels[ends], probs.argmax(axis=-1), probs)\n+    return classification_metrics(arrays.labels[ends], probs.argmax(axis=+1), probs)",
    ): "probs is 2-D ([windows, classes]): argmax over axis +1 is over axis -1",
    (
        "models.training.evaluation.x_champion_comparison",
        '-        and float(manifest["labels"].get("scale", -1)) == dataset.theta\n+        and float(manifest["labels"].get("scale", -2)) == dataset.theta',
    ): "a label scale (theta or k) is validated > 0 (LabelConfig), so a missing scale read as -2 matches none, like -1",
    (
        "models.training.evaluation.x_champion_comparison",
        '-    seen_until = np.datetime64(pd.Timestamp(manifest["splits"]["validation"][1]), "ns")\n+    seen_until = np.datetime64(pd.Timestamp(manifest["splits"]["validation"][1]), )',
    ): "np.datetime64 of a Timestamp without a unit is in microseconds; datetime64 comparisons are by value across units, and a split end is a whole day",
    (
        "models.training.evaluation.x_evaluate_model",
        "-    model = keras.saving.load_model(model_path, safe_mode=True)\n+    model = keras.saving.load_model(model_path, safe_mode=None)",
    ): "keras.saving.load_model treats safe_mode=None as safe mode (checked: a Lambda model is refused with None, with True and by default)",
    (
        "models.training.evaluation.x_evaluate_model",
        "-    model = keras.saving.load_model(model_path, safe_mode=True)\n+    model = keras.saving.load_model(model_path, )",
    ): "keras.saving.load_model is in safe mode by default (safe_mode=True)",
    (
        "models.training.evaluation.x_champion_comparison",
        '-    model = keras.saving.load_model(champion_bundle / "model.keras", safe_mode=True)\n+    model = keras.saving.load_model(champion_bundle / "model.keras", safe_mode=None)',
    ): "keras.saving.load_model treats safe_mode=None as safe mode (checked: a Lambda model is refused with None, with True and by default)",
    (
        "models.training.evaluation.x_champion_comparison",
        '-    model = keras.saving.load_model(champion_bundle / "model.keras", safe_mode=True)\n+    model = keras.saving.load_model(champion_bundle / "model.keras", )',
    ): "keras.saving.load_model is in safe mode by default (safe_mode=True)",
    (
        "models.training.evaluation.x_champion_comparison",
        '-    y = pooled["labels"][mask].astype(np.int64)\n+    y = pooled["labels"][mask].astype(None)',
    ): "float64 labels instead of int64: compared by value with the argmax, cast to int64 where they index (bootstrap one-hot)",
    (
        "models.training.evaluation.x_champion_comparison",
        '-    ours_correct = (pooled["model"][mask].argmax(axis=1) == y).astype(np.float64)\n+    ours_correct = (pooled["model"][mask].argmax(axis=1) == y).astype(None)',
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x_champion_comparison",
        "-    theirs_correct = (probs.argmax(axis=1) == y).astype(np.float64)\n+    theirs_correct = (probs.argmax(axis=1) == y).astype(None)",
    ): "astype(None) is astype(float64)",
    (
        "models.training.evaluation.x_predict_windows",
        "-    model: keras.Model, matrix: np.ndarray, ends: np.ndarray, window: int, batch: int = 2048\n+    model: keras.Model, matrix: np.ndarray, ends: np.ndarray, window: int, batch: int = 2049",
    ): "the default batch only splits the forward pass of a stateless model (a stateful one uses its own): each window's output does not depend on it",
    (
        "models.training.evaluation.x_champion_metrics",
        '-        and float(manifest["labels"].get("scale", -1)) == info.theta\n+        and float(manifest["labels"].get("scale", -2)) == info.theta',
    ): "a label scale (theta or k) is validated > 0 (LabelConfig), so a missing scale read as -2 matches none, like -1",
    (
        "models.training.evaluation.x_predict_windows",
        "-    out = np.concatenate(chunks) if chunks else np.zeros((0, K), dtype=np.float32)\n+    out = np.concatenate(chunks) if chunks else np.zeros((0, K), dtype=None)",
    ): "no window: an empty (0, 3) array of float64 instead of float32 holds no value to differ",
    (
        "models.training.evaluation.x_predict_windows",
        "-    out = np.concatenate(chunks) if chunks else np.zeros((0, K), dtype=np.float32)\n+    out = np.concatenate(chunks) if chunks else np.zeros((0, K), )",
    ): "no window: an empty (0, 3) array of float64 instead of float32 holds no value to differ",
    (
        "models.training.evaluation.x_predict_windows",
        "-    if out.shape[-1] == K and not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):\n+    if out.shape[+1] == K and not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):",
    ): "the outputs are 2-D ([windows, classes]): shape[+1] is shape[-1]",
    (
        "models.training.evaluation.x_predict_windows",
        "-    if out.shape[-1] == K and not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):\n+    if out.shape[-1] == K and not np.allclose(out.sum(axis=+1), 1.0, atol=1e-3):",
    ): "the outputs are 2-D ([windows, classes]): the sum over axis +1 is over axis -1",
}
