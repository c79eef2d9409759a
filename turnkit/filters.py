"""The Jinja filters turnkit's templates use, for `turnkit render` and (playbooks/filter_plugins) the roles.

Kept apart from turnkit.render and free of heavy imports: Ansible loads every filter plugin in each
forked worker that compiles a template or a condition, so this module's import cost is paid per task.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable


class UnsafeValueError(ValueError):
    """A value would end a directive or a line in a rendered file (names the character, never the value)."""


#: One token of an NGINX, coturn or certbot INI directive is printable ASCII (`!`..`~`) without
#: these: they end a directive, open or close a block, start a comment, quote or expand.
_CONF_FORBIDDEN = frozenset(";{}#\"'`$\\")


def conf_value(value: object) -> str:
    """Jinja filter `conf_value`: the value as text, refused if it could end a directive or a line."""
    text = str(value)
    bad = next((c for c in text if c in _CONF_FORBIDDEN or not "!" <= c <= "~"), None)
    if bad is not None:
        raise UnsafeValueError(f"a value contains {bad!r}, which could end a directive or a line")
    return text


def shell_quote(value: object) -> str:
    """Jinja filter `quote` (the same as Ansible's): one POSIX shell word, whatever the value holds."""
    return shlex.quote(str(value))


#: Filters the templates use; the Ansible roles get the same through playbooks/filter_plugins.
FILTERS: dict[str, Callable[[object], str]] = {"conf_value": conf_value, "quote": shell_quote}
