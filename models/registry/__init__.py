"""Published models: bundles, the local and object-store registries, the predictor, the smoke test,
the report and publication (the `python -m models` command line is models/cli.py, one layer up).
May import every other part of `models` below it.

    from models.registry import Registry
    predictor = Registry(".pipeline/registry").load_predictor("updown@champion")
"""

from models.registry.bundle import BundleRef, RegistryError
from models.registry.local import ChampionMoved, Registry, load_predictor, smoke_state
from models.registry.object_store import ObjectStoreRegistry

__all__ = [
    "BundleRef",
    "ChampionMoved",
    "ObjectStoreRegistry",
    "Registry",
    "RegistryError",
    "load_predictor",
    "smoke_state",
]
