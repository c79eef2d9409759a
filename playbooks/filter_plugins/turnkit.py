"""The Jinja filters turnkit's shared templates use, for the Ansible roles (same code as `turnkit render`)."""

from turnkit.filters import FILTERS


class FilterModule:
    def filters(self):
        # `quote` is Ansible's own (shlex.quote too); only the turnkit-specific ones are added.
        return {name: func for name, func in FILTERS.items() if name != "quote"}
