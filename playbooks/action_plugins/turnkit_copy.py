"""`ansible.builtin.copy`, but a file that needs nothing costs one shell round trip, not two module
runs (turnkit.fastpath says why and when); anything else is the builtin action unchanged."""

from ansible.plugins.action.copy import ActionModule as CopyAction
from ansible.utils.hashing import checksum

from turnkit import fastpath


class ActionModule(CopyAction):
    def _copy_file(self, source_full, source_rel, content, content_tempfile, dest, task_vars, follow):
        found = self._already_there(source_full, dest)
        if found is None:
            return super()._copy_file(source_full, source_rel, content, content_tempfile, dest, task_vars, follow)
        self._remove_tempfile_if_content_defined(content, content_tempfile)
        return fastpath.result(dest, found, "dest")

    def _already_there(self, source_full, dest):
        if self._connection._shell.path_has_trailing_slash(dest):
            return None
        real = self._loader.get_real_file(source_full)
        try:
            want = fastpath.wanted(self._task.args, "file", checksum(real))
        finally:
            self._loader.cleanup_tmp_file(real)
        return None if want is None else fastpath.check(self._low_level_execute_command, dest, want)
