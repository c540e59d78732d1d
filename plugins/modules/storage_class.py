#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_class
short_description: Create, update or remove a StorageClass, and make it the only default
version_added: 0.1.0
description:
  - Applies one StorageClass with server-side apply (field manager V(kubestorage.enablement)). An unchanged class
    is not written.
  - C(provisioner), C(parameters), C(reclaimPolicy) and C(volumeBindingMode) cannot change in place. Such a change
    fails naming the class and the fields, unless O(recreate=true), which deletes and recreates the class.
    Existing volumes keep working, because PersistentVolumes do not refer back to their class object.
  - With O(default=true), the class gets C(storageclass.kubernetes.io/is-default-class=true), and the annotation
    (and its beta form) is removed from every other class. Those are listed in C(default_removed_from).
author:
  - kubestorage maintainers (@kubestorage)
options:
  name:
    description: The StorageClass's name.
    type: str
    required: true
  provisioner:
    description: The provisioner, for example a CSI driver's name. Required with O(state=present).
    type: str
  parameters:
    description: Parameters for the provisioner. Values are sent as strings.
    type: dict
  reclaim_policy:
    description: C(reclaimPolicy) of the volumes it provisions. Default V(Delete).
    type: str
    choices: [Delete, Retain]
  volume_binding_mode:
    description: C(volumeBindingMode). Default V(Immediate).
    type: str
    choices: [Immediate, WaitForFirstConsumer]
  allow_volume_expansion:
    description: C(allowVolumeExpansion).
    type: bool
  mount_options:
    description: C(mountOptions).
    type: list
    elements: str
  allowed_topologies:
    description: C(allowedTopologies), as in the API.
    type: list
    elements: dict
  default:
    description: Make this the cluster's only default class.
    type: bool
    default: false
  labels:
    description: Extra labels.
    type: dict
  annotations:
    description: Extra annotations.
    type: dict
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  recreate:
    description: Delete and recreate the class when an immutable field would change.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubestorage.enablement.k8s_auth
attributes:
  check_mode:
    support: full
    details: Writes are sent with C(dryRun=All); the API server validates them and stores nothing.
  diff_mode:
    support: full
    details: The class before and after.
  platform:
    platforms: posix
seealso:
  - module: kubestorage.enablement.csi_driver
"""

EXAMPLES = r"""
- name: The default class of the hostpath driver
  kubestorage.enablement.storage_class:
    name: csi-hostpath
    provisioner: hostpath.csi.k8s.io
    volume_binding_mode: WaitForFirstConsumer
    allow_volume_expansion: true
    default: true
  register: sc

- name: Say which classes are no longer the default
  ansible.builtin.debug:
    var: sc.default_removed_from
"""

RETURN = r"""
action:
  description: V(created), V(updated), V(unchanged), V(recreated), V(deleted) or V(absent).
  returned: always
  type: str
default_removed_from:
  description: Other classes whose default annotation was removed.
  returned: always
  type: list
  elements: str
storage_class:
  description: The class as the API server returned it (without managedFields).
  returned: with O(state=present)
  type: dict
requests:
  description: HTTP requests sent to the API server, by method.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_deploy
from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_objects as co
from ansible_collections.kubestorage.enablement.plugins.module_utils import k8s_apply as ka

CLASS_KEYS = ("name", "provisioner", "parameters", "reclaim_policy", "volume_binding_mode", "allow_volume_expansion",
              "mount_options", "allowed_topologies", "default", "labels", "annotations")


def main():
    spec = dict(
        name=dict(type="str", required=True),
        provisioner=dict(type="str"),
        parameters=dict(type="dict"),
        reclaim_policy=dict(type="str", choices=["Delete", "Retain"]),
        volume_binding_mode=dict(type="str", choices=["Immediate", "WaitForFirstConsumer"]),
        allow_volume_expansion=dict(type="bool"),
        mount_options=dict(type="list", elements="str"),
        allowed_topologies=dict(type="list", elements="dict"),
        default=dict(type="bool", default=False),
        labels=dict(type="dict"),
        annotations=dict(type="dict"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        recreate=dict(type="bool", default=False),
    )
    spec.update(ka.CONNECTION_ARGS)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("state", "present", ("provisioner",))])
    params = {key: module.params[key] for key in CLASS_KEYS}

    def work():
        if module.params["state"] == "present":
            co.normalize_storage_class(params)   # checked before any request
        if not ka.HAS_KUBERNETES:
            module.fail_json(msg=missing_required_lib("kubernetes"), exception=ka.KUBERNETES_IMPORT_ERROR)
        applier = ka.Applier(ka.connect(module.params), check_mode=module.check_mode)
        if module.params["state"] == "present":
            result = csi_deploy.storage_class(applier, params, recreate=module.params["recreate"])
        else:
            result = csi_deploy.remove_storage_class(applier, module.params["name"])
        result["requests"] = dict(applier.requests)
        return result

    csi_deploy.run_module(module, work)


if __name__ == "__main__":
    main()
