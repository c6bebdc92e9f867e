"""After publication: the champion's nightly predictions, its live scorecard, and drift.

A test split says how a model did on the past; this layer says how the champion is doing now, on the
sessions after its training, with the gate's own yardsticks. It sits above `models.registry` (it uses
the registry, the predictor and the bundle's files) and below the CLI, tasks and flows; it imports no
Prefect. Each night, after ingest and before any retrain:

```
price store ─► predictions   <home>/predictions/<model>/<YYYY-MM-DD>.parquet   (the champion, nothing refitted)
            ─► scorecard     <registry>/<model>/scorecard.parquet              (matured predictions, realized labels,
                                                                                the gate's baselines on the same windows)
            ─► summary       rolling window, block-bootstrap bounds, degraded?  + <registry>/<model>/scorecard.png
            ─► drift         latest sessions' features vs the train bins in stats.parquet
```

Modules: `sessions` (the champion as scoring needs it, and the stored sessions under its rules),
`predictions`, `scorecard`, `summary` (metrics, the degraded rule, the plot), `drift`, `report`
(markdown), `nightly` (the steps above as plain functions the tasks call).

What the bundle must carry for this, written at training time: `baselines.json` (the published
fold's fitted baselines, exactly) and the train bins in `stats.parquet`. Bundles from before either
are scored without the missing part, and the summary says which.
"""
