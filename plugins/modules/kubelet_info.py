#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubelet_info
short_description: Report how a node's kubelet and container runtime are set up for storage
version_added: 0.1.0
description:
  - Reports, in one call, what the storage roles need to know about a node.
  - Where kubelet's settings live. This is the layout (V(kubeadm), V(kubespray), V(k3s), V(rke2), V(plain) or
    V(none)) and the files that hold the flags and the KubeletConfiguration.
  - The kubelet version, from C(kubelet --version).
  - The container runtimes present (containerd, docker, CRI-O), whether they are active, and their effective
    C(MountFlags).
  - The mount propagation of C(/) and of the kubelet root dir as the host sees it.
  - Never changes anything.
author:
  - kubestorage maintainers (@kubestorage)
options:
  kubelet_root_dir:
    description: kubelet's C(--root-dir).
    type: path
    default: /var/lib/kubelet
  kubelet_binary:
    description: Name or path of the kubelet binary, for C(--version).
    type: str
    default: kubelet
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only, so check mode runs it as usual.
  diff_mode:
    support: none
    details: Nothing changes.
  platform:
    platforms: posix
seealso:
  - module: kubestorage.enablement.component_flags
  - module: kubestorage.enablement.kubelet_config
"""

EXAMPLES = r"""
- name: Read how kubelet is configured
  kubestorage.enablement.kubelet_info:
  register: node

- name: Show the layout
  ansible.builtin.debug:
    msg: "{{ node.layout }} {{ node.kubernetes_version }} {{ node.files }}"
"""

RETURN = r"""
layout:
  description: How kubelet is configured on this node.
  returned: always
  type: str
  sample: kubeadm
files:
  description:
    - The files that hold kubelet's settings in this layout. Keys are C(env_file), C(kubeadm_flags), C(dropin),
      C(kubelet_config), C(config_list) and C(unit), each present where it applies.
  returned: always
  type: dict
  sample: {env_file: /etc/default/kubelet, kubelet_config: /var/lib/kubelet/config.yaml}
kubernetes_version:
  description: kubelet's version without the leading V(v), or null when kubelet cannot be run.
  returned: always
  type: str
  sample: 1.33.0
runtimes:
  description: Container runtime units present on the node.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: V(containerd), V(docker) or V(crio).
      type: str
    unit_file:
      description: The unit file.
      type: str
    mount_flags:
      description: Effective C(MountFlags=) of the unit and its drop-ins (null when unset).
      type: str
    active:
      description: Whether systemd reports the unit active.
      type: bool
    propagation:
      description:
        - Propagation of C(/) in the runtime's own mount namespace, read from C(/proc/<MainPID>/mountinfo).
          V(shared) is what C(Bidirectional) mount propagation needs. It is null when the runtime is not running.
      type: str
propagation:
  description: Mount propagation (V(shared), V(slave), V(private)) of C(/) and of O(kubelet_root_dir).
  returned: always
  type: dict
  sample: {"/": shared, "/var/lib/kubelet": shared}
systemd:
  description: Whether systemd is PID 1 (and so in charge of mount propagation at boot).
  returned: always
  type: bool
kubelet:
  description: The running kubelet.
  returned: always
  type: dict
  contains:
    active:
      description: Whether kubelet runs (null without systemd).
      type: bool
    pid:
      description: kubelet's main PID.
      type: int
    started_at:
      description: When it started, epoch seconds.
      type: float
    unread_files:
      description:
        - Settings files modified after kubelet started. kubelet has not read them yet, for example because an
          earlier run changed them and failed before restarting kubelet.
      type: list
      elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils.kubelet_node import (
    detect_layout,
    kubelet_version,
    mount_propagation,
    process_start_time,
    restart_pending,
    runtimes,
    settings_files,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kubelet_root_dir=dict(type="path", default="/var/lib/kubelet"),
            kubelet_binary=dict(type="str", default="kubelet"),
        ),
        supports_check_mode=True,
    )
    result = dict(changed=False, **detect_layout("/"))

    result["kubernetes_version"] = kubelet_version(module, module.params["kubelet_binary"])

    found = runtimes("/")
    systemd = os.path.isdir("/run/systemd/system")
    if found and systemd:
        rc, out, err = module.run_command(["systemctl", "is-active"] + ["%s.service" % r["name"] for r in found])
        states = out.split()
        for runtime, state in zip(found, states):
            runtime["active"] = state == "active"
            runtime["propagation"] = None
            if runtime["active"]:
                rc, pid, err = module.run_command(["systemctl", "show", "-p", "MainPID", "--value",
                                                   "%s.service" % runtime["name"]])
                info = "/proc/%s/mountinfo" % pid.strip()
                if rc == 0 and pid.strip() not in ("", "0") and os.path.exists(info):
                    runtime["propagation"] = mount_propagation("/", info)
    else:
        for runtime in found:
            runtime["active"] = None
            runtime["propagation"] = None
    result["runtimes"] = found

    kubelet_state = {"active": None, "pid": None, "started_at": None, "unread_files": []}
    if systemd:
        rc, out, err = module.run_command(["systemctl", "show", "-p", "MainPID", "--value", "kubelet.service"])
        pid = out.strip()
        if rc == 0 and pid.isdigit() and pid != "0":
            try:
                started = process_start_time(int(pid))
            except (OSError, ValueError, StopIteration, IndexError):
                started = None
            kubelet_state.update(active=True, pid=int(pid), started_at=started)
            if started is not None:
                kubelet_state["unread_files"] = restart_pending(started, settings_files(result))
        else:
            kubelet_state["active"] = False
    result["kubelet"] = kubelet_state
    result["systemd"] = systemd
    result["propagation"] = {t: mount_propagation(t) for t in ("/", module.params["kubelet_root_dir"])}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
