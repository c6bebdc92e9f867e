"""Files written by yfinance's own code, as users save them, fetched from the fake Yahoo.

    python -m tests.yfinance_writer URL CACHE_DIR SPECS_JSON

Each spec is {"path": ..., "call": "history" | "download", "tickers": [...], "options": {...}}:
`yf.Ticker(t).history(**options)` or `yf.download(tickers, **options)`, then `.to_csv(path)` or
`.to_parquet(path)` by the path's suffix. yfinance runs in a process of its own: once TensorFlow is
loaded, curl_cffi (yfinance's HTTP client) can no longer set up its browser impersonation in that
process ("Impersonating chrome152 is not supported"), so a test process that trains cannot call it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_with_yfinance(url: str, cache: Path, specs: list[dict]) -> list[Path]:
    """Run yfinance in a fresh process against the fake Yahoo at `url`; returns the files written."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.yfinance_writer", url, str(cache), json.dumps(specs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"yfinance could not write the files: {done.stderr[-3000:]}")
    return [Path(spec["path"]) for spec in specs]


def main(argv: list[str]) -> int:
    import pytest
    import yfinance as yf

    from tests.yahoo_fake import redirect_yfinance

    url, cache, specs = argv[0], argv[1], json.loads(argv[2])
    redirect_yfinance(pytest.MonkeyPatch(), url)
    yf.set_tz_cache_location(cache)
    for spec in specs:
        options = spec.get("options", {})
        if spec["call"] == "history":
            frame = yf.Ticker(spec["tickers"][0]).history(**options)
        else:
            frame = yf.download(spec["tickers"], progress=False, threads=False, **options)
        if frame.empty:
            raise SystemExit(f"yfinance returned nothing for {spec}")
        path = Path(spec["path"])
        frame.to_csv(path) if path.suffix == ".csv" else frame.to_parquet(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
