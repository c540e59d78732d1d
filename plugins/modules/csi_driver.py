#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: csi_driver
short_description: Deploy or remove everything a CSI driver needs, through the Kubernetes API
version_added: 0.1.0
description:
  - From a compact description, builds and applies every object a CSI driver needs.
  - A controller and a node ServiceAccount.
  - RBAC per enabled sidecar with the sidecars' canonical rules. These are a ClusterRole and a ClusterRoleBinding,
    and a Role and a RoleBinding for leader election leases.
  - The CSIDriver object.
  - A controller Deployment. It runs provisioner, attacher (only when O(attach_required=true)), resizer,
    snapshotter (when enabled), livenessprobe and the driver container, with leader election when
    O(controller_replicas) is more than 1.
  - A node DaemonSet. It runs node-driver-registrar with C(--kubelet-registration-path=<kubelet_dir>/plugins/<name>/csi.sock),
    livenessprobe, and the privileged driver container with C(Bidirectional) mount propagation on
    C(<kubelet_dir>/pods) and C(<kubelet_dir>/plugins).
  - The StorageClasses listed in O(storage_classes).
  - Sidecar images come from a set tested per Kubernetes version range (csi-driver-host-path's deployments).
    Each can be overridden, and O(image_registry) points them at a mirror.
  - Every object carries the labels C(app.kubernetes.io/managed-by=kubestorage.enablement) and
    C(kubestorage.enablement/csi-driver=<name>).
  - Objects are written with server-side apply (field manager V(kubestorage.enablement)). An object whose applied
    configuration and live fields already match is not written at all, so a re-run makes no writes and reports
    C(changed=false).
  - Check mode sends the writes with C(dryRun=All), so the API server validates them and nothing is stored.
  - With O(output_dir), nothing is sent to a cluster. The objects are written as YAML files plus a
    C(kustomization.yaml), for GitOps or review.
author:
  - kubestorage maintainers (@kubestorage)
options:
  name:
    description: The CSI driver's name, as in C(CSIDriver) and StorageClass C(provisioner), for example V(hostpath.csi.k8s.io).
    type: str
    required: true
  namespace:
    description: Namespace of the workloads, ServiceAccounts and Roles. It must exist.
    type: str
    default: kube-system
  driver_image:
    description: The CSI driver's container image. Required with O(state=present).
    type: str
  driver_args:
    description:
      - Arguments of the driver container. The defaults are C(--endpoint=$(CSI_ENDPOINT)) and C(--nodeid=$(KUBE_NODE_NAME)).
        C(CSI_ENDPOINT) is C(unix:///csi/csi.sock) and C(KUBE_NODE_NAME) is the node's name.
    type: list
    elements: str
  attach_required:
    description: CSIDriver C(attachRequired). It also decides whether the attacher runs. Default V(true).
    type: bool
  pod_info_on_mount:
    description: CSIDriver C(podInfoOnMount). Default V(false).
    type: bool
  fs_group_policy:
    description: CSIDriver C(fsGroupPolicy). Default V(ReadWriteOnceWithFSType).
    type: str
    choices: [File, ReadWriteOnceWithFSType, None]
  volume_lifecycle_modes:
    description: CSIDriver C(volumeLifecycleModes). Default V([Persistent]).
    type: list
    elements: str
    choices: [Persistent, Ephemeral]
  storage_capacity:
    description: CSIDriver C(storageCapacity). The provisioner then publishes capacity. Default V(false).
    type: bool
  sidecars:
    description:
      - The sidecars, each with C(enabled), C(image) (overrides the tested image) and C(args) (added after the
        collection's own flags).
      - Enabled by default are V(provisioner), V(resizer), V(node_driver_registrar), V(livenessprobe), and
        V(attacher) exactly when O(attach_required) is true. V(snapshotter) is off by default.
    type: dict
    suboptions:
      provisioner:
        description: external-provisioner.
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
      attacher:
        description: external-attacher.
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
      resizer:
        description: external-resizer.
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
      snapshotter:
        description: external-snapshotter's csi-snapshotter.
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
      node_driver_registrar:
        description: node-driver-registrar.
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
      livenessprobe:
        description: livenessprobe (health port 9808).
        type: dict
        suboptions:
          enabled:
            description: Run this sidecar.
            type: bool
          image:
            description: Image to use instead of the tested one.
            type: str
          args:
            description: Extra arguments.
            type: list
            elements: str
  controller_replicas:
    description: Replicas of the controller Deployment. Above 1, every controller sidecar gets C(--leader-election).
    type: int
    default: 1
  kubelet_dir:
    description: kubelet's root dir on the nodes.
    type: path
    default: /var/lib/kubelet
  image_registry:
    description: Registry (and path) that replaces C(registry.k8s.io/sig-storage) in the tested sidecar images.
    type: str
  storage_classes:
    description: StorageClasses of this driver. Each item takes the options of M(kubestorage.enablement.storage_class).
    type: list
    elements: dict
    default: []
  state:
    description: V(present) applies the objects. V(absent) deletes every object labelled as this driver's, workloads first.
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Delete objects labelled as this driver's that are no longer desired. For example, the attacher's RBAC is
        deleted after O(attach_required) becomes false. V(false) keeps them.
    type: bool
    default: true
  recreate:
    description:
      - When an immutable field would change (CSIDriver C(attachRequired) and C(volumeLifecycleModes), before 1.29
        also C(podInfoOnMount) and C(fsGroupPolicy); StorageClass C(provisioner), C(parameters), C(reclaimPolicy),
        C(volumeBindingMode); workload selectors), delete and recreate only those objects.
      - Without it such a change fails, naming the object and the fields, before anything is written for that object.
    type: bool
    default: false
  wait:
    description: After applying, wait until the Deployment is available and the DaemonSet's pods are all updated and ready.
    type: bool
    default: false
  wait_timeout:
    description: Seconds O(wait) waits. On timeout the task fails and names the pods that are not ready and why.
    type: int
    default: 300
  output_dir:
    description:
      - Write the objects as YAML files and a C(kustomization.yaml) to this dir instead of contacting a cluster.
        Files of an earlier render that are no longer part of the set are deleted; other files are left alone.
      - Needs O(kubernetes_version).
    type: path
  kubernetes_version:
    description:
      - The cluster's version, which picks the sidecar images. Read from the API server when not given.
      - Required with O(output_dir).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubestorage.enablement.k8s_auth
attributes:
  check_mode:
    support: full
    details: Writes are sent with C(dryRun=All); the API server validates them and stores nothing.
  diff_mode:
    support: full
    details: One before/after pair per object that would change (or file, with O(output_dir)).
  platform:
    platforms: posix
seealso:
  - module: kubestorage.enablement.storage_class
"""

EXAMPLES = r"""
- name: Deploy the hostpath CSI driver
  kubestorage.enablement.csi_driver:
    name: hostpath.csi.k8s.io
    driver_image: registry.k8s.io/sig-storage/hostpathplugin:v1.17.0
    driver_args: ["--drivername=hostpath.csi.k8s.io", "--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"]
    attach_required: false
    volume_lifecycle_modes: [Persistent, Ephemeral]
    storage_classes:
      - name: csi-hostpath
        default: true
        volume_binding_mode: WaitForFirstConsumer
    wait: true
    kubeconfig: ~/.kube/config

- name: Render the same driver for GitOps
  kubestorage.enablement.csi_driver:
    name: hostpath.csi.k8s.io
    driver_image: registry.k8s.io/sig-storage/hostpathplugin:v1.17.0
    kubernetes_version: "1.33"
    output_dir: ./deploy/hostpath

- name: Remove it
  kubestorage.enablement.csi_driver:
    name: hostpath.csi.k8s.io
    state: absent
"""

RETURN = r"""
objects:
  description: Every desired object and what happened to it (V(created), V(updated), V(unchanged), V(recreated)).
  returned: with O(state=present) and no O(output_dir)
  type: list
  elements: dict
  sample: [{ref: CSIDriver hostpath.csi.k8s.io, action: unchanged}]
pruned:
  description: Objects deleted because they are no longer desired (in check mode, that would be deleted).
  returned: always
  type: list
  elements: str
removed:
  description: Objects deleted by O(state=absent).
  returned: with O(state=absent)
  type: list
  elements: str
default_removed_from:
  description: Other StorageClasses whose default annotation was removed because one of this driver's is the default.
  returned: always
  type: list
  elements: str
kubernetes_version:
  description: The version the images were picked for.
  returned: with O(state=present)
  type: str
images:
  description: Every container image of the workloads.
  returned: with O(state=present)
  type: list
  elements: str
files:
  description: The files of the rendered set.
  returned: with O(output_dir)
  type: list
  elements: str
deleted_files:
  description: Files of an earlier render that were deleted.
  returned: with O(output_dir)
  type: list
  elements: str
requests:
  description: HTTP requests sent to the API server, by method.
  returned: when a cluster was contacted
  type: dict
  sample: {GET: 18, PATCH: 0}
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_deploy
from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_objects as co
from ansible_collections.kubestorage.enablement.plugins.module_utils import k8s_apply as ka
from ansible_collections.kubestorage.enablement.plugins.module_utils.text_files import write_text

SIDECAR_SPEC = dict(type="dict", options=dict(enabled=dict(type="bool"), image=dict(type="str"),
                                              args=dict(type="list", elements="str")))
DRIVER_KEYS = ("name", "namespace", "driver_image", "driver_args", "attach_required", "pod_info_on_mount",
               "fs_group_policy", "volume_lifecycle_modes", "storage_capacity", "sidecars", "controller_replicas",
               "kubelet_dir", "image_registry", "storage_classes", "state", "kubernetes_version")


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str", default="kube-system"),
        driver_image=dict(type="str"),
        driver_args=dict(type="list", elements="str"),
        attach_required=dict(type="bool"),
        pod_info_on_mount=dict(type="bool"),
        fs_group_policy=dict(type="str", choices=["File", "ReadWriteOnceWithFSType", "None"]),
        volume_lifecycle_modes=dict(type="list", elements="str", choices=["Persistent", "Ephemeral"]),
        storage_capacity=dict(type="bool"),
        sidecars=dict(type="dict", options={name: SIDECAR_SPEC for name in co.SIDECARS}),
        controller_replicas=dict(type="int", default=1),
        kubelet_dir=dict(type="path", default="/var/lib/kubelet"),
        image_registry=dict(type="str"),
        storage_classes=dict(type="list", elements="dict", default=[]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        prune=dict(type="bool", default=True),
        recreate=dict(type="bool", default=False),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        output_dir=dict(type="path"),
        kubernetes_version=dict(type="str"),
    )
    spec.update(ka.CONNECTION_ARGS)
    return spec


def render(module, params):
    plan = csi_deploy.plan_render(params, module.params["output_dir"])
    output_dir = module.params["output_dir"]
    if not module.check_mode:
        for name, text in sorted(plan["write"].items()):
            write_text(module, os.path.join(output_dir, name), text)
        for name in plan["delete"]:
            os.unlink(os.path.join(output_dir, name))
    return dict(changed=bool(plan["write"] or plan["delete"]), files=plan["files"], deleted_files=plan["delete"],
                pruned=[], default_removed_from=[], kubernetes_version=str(params["kubernetes_version"]),
                images=csi_deploy.workload_images(plan["objects"]),
                diff=plan["diff"])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("state", "present", ("driver_image",))])
    params = {key: module.params[key] for key in DRIVER_KEYS}

    def work():
        co.normalize_params(params)              # every parameter checked before any request
        if module.params["output_dir"]:
            if params["state"] == "absent":
                module.fail_json(msg="output_dir: state=absent cannot be rendered; delete the files, or drop output_dir "
                                     "to remove the objects from a cluster")
            return render(module, params)
        if not ka.HAS_KUBERNETES:
            module.fail_json(msg=missing_required_lib("kubernetes"), exception=ka.KUBERNETES_IMPORT_ERROR)
        applier = ka.Applier(ka.connect(module.params), check_mode=module.check_mode)
        if params["state"] == "absent":
            result = csi_deploy.remove(applier, params)
        else:
            version = params["kubernetes_version"] or applier.server_version()
            applier.kubernetes_version = version
            result = csi_deploy.deploy(applier, params, version, prune=module.params["prune"],
                                       recreate=module.params["recreate"], wait=module.params["wait"],
                                       wait_timeout=module.params["wait_timeout"])
        result["requests"] = dict(applier.requests)
        return result

    csi_deploy.run_module(module, work)


if __name__ == "__main__":
    main()
