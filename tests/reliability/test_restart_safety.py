# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restart safety: kubelet_storage writes a flag the lab kubelet refuses to start with. The health
gate sees kubelet fail, restores the previous files, restarts kubelet again and fails the host
with both outcomes. The node's files are as before (apart from the backups the role keeps on
purpose) and kubelet is healthy.
"""

import json
import re

NODE = "w1"


def test_a_kubelet_that_does_not_come_back_is_restored_and_the_host_fails_clearly(lab):
    before = lab.fingerprint(NODE, ignore_backups=True)
    run = lab.playbook([{
        "name": "restart safety", "hosts": NODE, "gather_facts": False,
        "tasks": [{"name": "kubelet_storage with a flag this kubelet refuses",
                   "ansible.builtin.include_role": {"name": "kubestorage.enablement.kubelet_storage"},
                   "vars": {"kubelet_storage_health_timeout": 6,
                            "kubelet_storage_extra_flags": {"kubestorage-test-bogus-flag": "1"}}}]}])
    message = run.failure_message()
    assert run.rc != 0 and message, run.summary()
    assert re.search(r"did not become healthy", message), message
    assert re.search(r"unknown flag: --kubestorage-test-bogus-flag", message), message
    assert re.search(r"healthy again", message), message
    assert lab.fingerprint(NODE, ignore_backups=True) == before
    assert lab.sh(NODE, "find /etc/default /var/lib/kubelet -name '*~'").strip(), "the role kept no backup"
    state = json.loads(lab.sh(NODE, "cat /run/lab-kubelet/state.json"))
    assert state["running"] and "kubestorage-test-bogus-flag" not in state["flags"]
