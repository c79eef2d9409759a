"""The turnkit exception hierarchy and the exit codes the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Named process exit codes (0 ok, 1 a check failed, 2 bad usage or input)."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    RUNTIME = 3


class TurnkitError(Exception):
    """Root of every error turnkit raises on purpose; its text is one line for the user."""

    exit_code: ExitCode = ExitCode.RUNTIME


class ConfigError(TurnkitError):
    """turnkit.toml is missing, unreadable or invalid."""

    exit_code = ExitCode.USAGE


class NotProvisioned(ConfigError):
    """A region exists in turnkit.toml but has no recorded nodes yet."""


class InputError(TurnkitError):
    """A command-line value or API argument is invalid."""

    exit_code = ExitCode.USAGE


class SecretStoreError(TurnkitError):
    """The secret keyring file is missing, unreadable or inconsistent."""

    exit_code = ExitCode.USAGE


class WriteError(TurnkitError):
    """A file could not be written (permissions, full disk, a directory in the way)."""


class RenderError(TurnkitError):
    """A template could not be rendered (missing template or context key)."""


class DaemonError(TurnkitError):
    """A local daemon (coturn, signaling, nginx) failed to start or stop."""
