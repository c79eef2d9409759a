"""`ansible.builtin.template`, writing through `turnkit_copy` (a file that needs nothing costs one
shell round trip); the rendering is the builtin action's own."""

from ansible.plugins.action.template import ActionModule as TemplateAction


class _ActionLoader:
    """The action plugin loader, except that `copy` is `turnkit_copy`."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def get(self, name, *args, **kwargs):
        return self._loader.get("turnkit_copy" if name == "ansible.legacy.copy" else name, *args, **kwargs)


class _SharedLoaders:
    """Ansible's shared plugin loaders with `_ActionLoader` in place of the action loader."""

    def __init__(self, shared):
        self._shared = shared

    def __getattr__(self, name):
        return getattr(self._shared, name)

    @property
    def action_loader(self):
        return _ActionLoader(self._shared.action_loader)


class ActionModule(TemplateAction):
    def run(self, tmp=None, task_vars=None):
        self._shared_loader_obj = _SharedLoaders(self._shared_loader_obj)
        return super().run(tmp, task_vars)
