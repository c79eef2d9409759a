"""`ansible.builtin.file`, but a directory that already is what the task asks costs one shell round
trip, not a module run (turnkit.fastpath); anything else is the builtin module unchanged."""

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from turnkit import fastpath


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        path = args.get("path", args.get("dest", args.get("name")))
        want = fastpath.wanted(args, "directory")
        found = fastpath.check(self._low_level_execute_command, path, want) if want is not None and isinstance(path, str) else None
        if found is not None:
            return merge_hash(result, fastpath.result(path, found, "path"))
        result = merge_hash(result, self._execute_module(module_name="ansible.legacy.file", task_vars=task_vars))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
