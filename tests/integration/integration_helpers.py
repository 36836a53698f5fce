"""Helpers of the integration tests: the platform environment, definitions and runs for a home."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

ENV_KEYS = ("IARBRE_HOME", "IARBRE_TERRITORY", "DAGSTER_HOME", "IARBRE_DATA_DIR")
LYON_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lyon"


@dataclass
class PlatformRun:
    home: Path
    defs: dg.Definitions
    platform: object
    instance: dg.DagsterInstance
    outcome: object


class PlatformEnv:
    """Set the platform's environment for a home and territory; restore the previous one on exit."""

    def __init__(self, home: Path, territory: str = "demo"):
        self.values = {"IARBRE_HOME": str(home), "IARBRE_TERRITORY": territory,
                       "DAGSTER_HOME": str(home / "dagster")}
        self.saved = {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in ENV_KEYS}
        os.environ.pop("IARBRE_DATA_DIR", None)
        os.environ.update(self.values)
        return self

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build(home: Path, territory: str = "demo"):
    """Definitions and instance for a home (the env must be set, see PlatformEnv)."""
    from iarbre_assets.cli import write_instance_config
    from iarbre_assets.definitions import build_definitions

    write_instance_config(home / "dagster")
    defs, platform = build_definitions(return_platform=True)
    return defs, platform, dg.DagsterInstance.from_config(str(home / "dagster"))


def run_platform(home: Path, territory: str = "demo", select: str | None = None) -> PlatformRun:
    from iarbre_assets.runner import materialise_all

    defs, platform, instance = build(home, territory)
    outcome = materialise_all(defs=defs, platform=platform, instance=instance, select=select)
    return PlatformRun(home, defs, platform, instance, outcome)
