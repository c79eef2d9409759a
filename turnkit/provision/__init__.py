"""Provisioning: one provider class per region kind, found by name in `PROVIDERS`.

Adding a kind: write `turnkit/provision/<kind>.py` with a `Provider` subclass and add one line
to `PROVIDERS` (and the name to `Region.provider` in config.py, which
tests/provision/test_registry.py keeps in step).
"""

from __future__ import annotations

import importlib
from typing import Any

from turnkit.config import Config
from turnkit.provision.base import Action, Diff, Provider, ProvisionError, changes

__all__ = ["PROVIDERS", "Action", "Diff", "Provider", "ProvisionError", "changes", "provider_class", "provider_for"]

#: `regions.X.provider` → "module:Class"; imported on first use (boto3 is slow to import).
PROVIDERS: dict[str, str] = {
    "aws": "turnkit.provision.aws:AwsProvider",
    "static": "turnkit.provision.static:StaticProvider",
    "local": "turnkit.provision.local:LocalProvider",
    "lab": "turnkit.provision.lab:LabProvider",
}


def provider_class(kind: str) -> type[Provider[Any]]:
    module, _, name = PROVIDERS[kind].partition(":")
    cls: type[Provider[Any]] = getattr(importlib.import_module(module), name)
    return cls


def provider_for(cfg: Config, region: str) -> Provider[Any]:
    """The provider of `region` (ConfigError, one line, for an unknown region)."""
    return provider_class(cfg.region(region).provider)(cfg, region)
