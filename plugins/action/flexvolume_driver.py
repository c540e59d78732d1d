# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for kubestorage.enablement.flexvolume_driver.

With ``src`` (a file on the controller) the module runs first with the file's sha256 only.
If the node already has an executable with that checksum, that single call is the whole task
and nothing is sent. Otherwise the file is sent to the node's temp dir and the module runs
again with it as ``remote_src``. In check mode the file is sent too, so that the new version
can be verified; the plugin dir is not written.
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.kubestorage.enablement.plugins.module_utils.flexvolume import (
    FlexVolumeError,
    file_sha256,
    parse_checksum,
)

MODULE = "kubestorage.enablement.flexvolume_driver"


class ActionModule(ActionBase):

    TRANSFERS_FILES = False  # a temp dir is made only when the file must be sent

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        given = [k for k in ("src", "remote_src", "content") if args.get(k) is not None]
        if len(given) > 1:
            result.update(failed=True, msg="give exactly one of src, remote_src or content, not %s"
                          % " and ".join(given))
            return result
        if not args.get("src") or args.get("state", "present") == "absent":
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result

        try:
            local = self._find_needle("files", args["src"])
        except AnsibleError as exc:
            result.update(failed=True, msg="src %s: %s" % (args["src"], to_text(exc)))
            return result
        local_checksum = file_sha256(local)
        try:
            expected = parse_checksum(args.get("checksum"))
        except FlexVolumeError as exc:
            result.update(failed=True, msg=exc.msg)
            return result
        if expected and expected != local_checksum:
            result.update(failed=True, rolled_back=False,
                          msg="checksum mismatch for src %s: expected sha256:%s, got sha256:%s; fix the checksum "
                              "or the file. Nothing was changed." % (local, expected, local_checksum))
            return result
        args["src"] = local
        args["checksum"] = "sha256:" + local_checksum

        first = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        if first.get("failed") or not first.pop("transfer_required", False):
            result.update(first)
            result["transferred"] = False
            return result

        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        try:
            remote = self._connection._shell.join_path(tmpdir, "flexvolume-driver-source")
            self._transfer_file(local, remote)
            self._fixup_perms2((tmpdir, remote))
            args["remote_src"] = remote
            second = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        finally:
            self._remove_tmp_path(tmpdir)
        result.update(second)
        result["transferred"] = True
        return result
