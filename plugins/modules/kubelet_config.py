#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubelet_config
short_description: Edit a KubeletConfiguration file (feature gates, volume plugin dir, other fields)
version_added: 0.1.0
description:
  - Edits kubelet's KubeletConfiguration file, such as kubeadm's C(/var/lib/kubelet/config.yaml) or kubespray's
    C(/etc/kubernetes/kubelet-config.yaml). It merges O(feature_gates) into C(featureGates), sets
    C(volumePluginDir) and any other top-level fields given in O(settings), and keeps everything else.
  - Refuses files that are not a KubeletConfiguration.
  - It knows which gates each Kubernetes version accepts. A gate that would stop kubelet from starting is never
    written (see O(gate_policy)), and gates already in the file are checked too.
  - C(volumePluginDir) is refused for kubelet older than 1.19, which ignores that field. Use
    M(kubestorage.enablement.component_flags) with C(volume-plugin-dir) there.
author:
  - kubestorage maintainers (@kubestorage)
options:
  path:
    description: The KubeletConfiguration file. It must exist.
    type: path
    default: /var/lib/kubelet/config.yaml
  feature_gates:
    description: Gates to merge into C(featureGates), name to V(true) or V(false). A null value removes the gate.
    type: dict
    default: {}
  volume_plugin_dir:
    description: Sets C(volumePluginDir), kubelet's FlexVolume plugin dir.
    type: path
  settings:
    description:
      - Other top-level fields to set, for example V(enableControllerAttachDetach). A null value removes a field.
    type: dict
    default: {}
  backup:
    description: Keep a copy of the previous file next to it.
    type: bool
    default: false
extends_documentation_fragment:
  - kubestorage.enablement.version_policy
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Needs PyYAML on the node. With ruamel.yaml installed there, comments in the file are kept too.
seealso:
  - module: kubestorage.enablement.component_flags
"""

EXAMPLES = r"""
- name: Plugin dir and gates in kubeadm's kubelet config
  kubestorage.enablement.kubelet_config:
    volume_plugin_dir: /var/lib/kubelet/volumeplugins
    feature_gates:
      CSIMigration: true      # dropped with a warning on 1.27+, where it no longer exists
    settings:
      enableControllerAttachDetach: true
    backup: true
"""

RETURN = r"""
path:
  description: The file that was managed.
  returned: always
  type: str
config:
  description: The whole configuration after the task.
  returned: always
  type: dict
feature_gates:
  description: The resulting C(featureGates).
  returned: always
  type: dict
dropped:
  description: Gates left out because kubelet's version would refuse them, with the reason.
  returned: always
  type: dict
kubernetes_version:
  description: The version the gates were checked against.
  returned: always
  type: str
restart_required:
  description: Whether kubelet must be restarted to use the change.
  returned: always
  type: bool
backup_file:
  description: The copy of the previous file.
  returned: when a backup was made
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils import feature_gates as fg
from ansible_collections.kubestorage.enablement.plugins.module_utils.component_settings import (
    SettingsError,
    plan_kubelet_config,
)
from ansible_collections.kubestorage.enablement.plugins.module_utils.flag_files import FlagFileError
from ansible_collections.kubestorage.enablement.plugins.module_utils.kubelet_node import kubelet_version
from ansible_collections.kubestorage.enablement.plugins.module_utils.text_files import apply_text, edit_lock, read_text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/kubelet/config.yaml"),
            feature_gates=dict(type="dict", default={}),
            volume_plugin_dir=dict(type="path"),
            settings=dict(type="dict", default={}),
            kubernetes_version=dict(type="str"),
            gate_policy=dict(type="str", default="drop_obsolete", choices=["drop_obsolete", "strict"]),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    for gate, value in p["feature_gates"].items():
        if value is not None and not isinstance(value, bool):
            module.fail_json(msg="feature_gates.%s: %r is not true, false or null" % (gate, value))
    settings = dict(p["settings"])
    if p["volume_plugin_dir"]:
        settings["volumePluginDir"] = p["volume_plugin_dir"]
    # Read, plan and write under one lock: a concurrent run edits the result of this one.
    with edit_lock(path, enabled=not module.check_mode):
        try:
            text = read_text(path)
            if text is None:
                raise SettingsError("path %s: no such file; kubeadm and kubespray write it when the node joins, check "
                                    "the path" % path)
            version = p["kubernetes_version"] or kubelet_version(module)
            if not version:
                raise SettingsError("kubernetes_version: `kubelet --version` gave no version (no kubelet binary, or it "
                                    "failed); give kubernetes_version, e.g. '1.25'")
            version = "%d.%d.%d" % fg.parse_version(version)
            plan = plan_kubelet_config(text, path, settings=settings, feature_gates=p["feature_gates"], version=version,
                                       policy=p["gate_policy"])
        except (SettingsError, FlagFileError, fg.GateError) as exc:
            module.fail_json(msg=exc.msg, path=path)

        result = dict(path=path, config=plan["config"], feature_gates=plan["feature_gates"], dropped=plan["dropped"],
                      kubernetes_version=version)
        for warning in plan["warnings"] + (plan["notes"] if plan["text"] != text else []):
            module.warn(warning)
        result["restart_required"] = apply_text(module, path, text, plan["text"], result, backup=p["backup"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
