"""Provisioning: one provider per region kind (`aws`, `static`, `local`, `lab`) behind `base.Provider`."""

from __future__ import annotations

from collections.abc import Callable

from turnkit.config import Config
from turnkit.provision.base import Action, Provider, ProvisionError, changes

__all__ = ["Action", "Provider", "ProvisionError", "changes", "provider_for"]


def _aws(cfg: Config, region: str) -> Provider:
    from turnkit.provision.aws import AwsProvider

    return AwsProvider(cfg, region)


def _static(cfg: Config, region: str) -> Provider:
    from turnkit.provision.static import StaticProvider

    return StaticProvider(cfg, region)


def _local(cfg: Config, region: str) -> Provider:
    from turnkit.provision.local import LocalProvider

    return LocalProvider(cfg, region)


def _lab(cfg: Config, region: str) -> Provider:
    from turnkit.provision.lab import LabProvider

    return LabProvider(cfg, region)


#: provider name (turnkit.toml `regions.X.provider`) → factory; imports are lazy (boto3 is slow).
PROVIDERS: dict[str, Callable[[Config, str], Provider]] = {"aws": _aws, "static": _static, "local": _local, "lab": _lab}


def provider_for(cfg: Config, region: str) -> Provider:
    """The provider for `region` (raises ConfigError for an unknown region)."""
    return PROVIDERS[cfg.region(region).provider](cfg, region)
