#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: component_flags
short_description: Manage command-line flags and feature gates of kubelet or a control-plane component
version_added: 0.1.0
description:
  - Sets, changes or removes command-line flags of kubelet, kube-controller-manager, kube-apiserver or
    kube-scheduler wherever they live on the node. Everything else in the file is kept, including other lines,
    comments and quoting.
  - C(env_file) is a variable in an environment file, such as C(KUBELET_EXTRA_ARGS) in C(/etc/default/kubelet),
    C(/etc/sysconfig/kubelet), or kubespray's C(/etc/kubernetes/kubelet.env).
  - C(static_pod) is the command list of a container in a static pod manifest, such as kubeadm's
    C(/etc/kubernetes/manifests/*.yaml). When a flag names a host dir the component must see, the matching
    hostPath volume and volumeMount are added or moved too. This covers kube-controller-manager's
    C(--flex-volume-plugin-dir) and kubeadm's C(flexvolume-dir) volume.
  - C(systemd_dropin) is an C(Environment=) variable in a systemd drop-in of the component's unit.
  - C(config_list) is a YAML list of C(name=value) strings under a key, as k3s and RKE2 keep them, for example
    C(kubelet-arg) in C(/etc/rancher/k3s/config.yaml).
  - O(feature_gates) and O(runtime_config) are merged into the existing C(--feature-gates) and
    C(--runtime-config) maps entry by entry. Gates it was not told about are left alone.
  - It knows which gates and flags each Kubernetes version accepts. It never writes a gate or flag that would
    stop the component from starting. Depending on O(gate_policy), such an entry is either dropped with a
    warning or the task fails, before anything is written. This also applies to entries already in the file,
    such as a gate left over from an older version.
author:
  - kubestorage maintainers (@kubestorage)
options:
  component:
    description: The component whose flags these are.
    type: str
    required: true
    choices: [kubelet, kube-controller-manager, kube-apiserver, kube-scheduler]
  backend:
    description: Where the flags live (see the description).
    type: str
    required: true
    choices: [env_file, static_pod, systemd_dropin, config_list]
  path:
    description: The file. Created if missing, except with O(backend=static_pod).
    type: path
    required: true
  variable:
    description:
      - The variable holding the flags, for O(backend=env_file) and O(backend=systemd_dropin).
      - Defaults to V(KUBELET_EXTRA_ARGS) for kubelet. Required for other components.
    type: str
  container:
    description: The container whose command holds the flags, for O(backend=static_pod). Defaults to O(component).
    type: str
  key:
    description: The list's key, for O(backend=config_list). Defaults to V(<component>-arg) (k3s spelling, e.g. V(kubelet-arg)).
    type: str
  flags:
    description:
      - Flags to set, named as kubeadm's C(extraArgs) spell them, without leading dashes (leading dashes are
        accepted too). For example V(volume-plugin-dir).
      - A null value removes the flag. Booleans are written as V(true) or V(false).
      - C(feature-gates) and C(runtime-config) go through O(feature_gates) and O(runtime_config) instead.
    type: dict
    default: {}
  feature_gates:
    description:
      - Feature gates to merge into C(--feature-gates), name to V(true) or V(false). A null value removes the gate.
    type: dict
    default: {}
  runtime_config:
    description:
      - Entries to merge into C(--runtime-config), for example V(storage.k8s.io/v1alpha1=true) for 1.9-era CSI.
        A null value removes the entry.
    type: dict
    default: {}
  mount_host_dirs:
    description:
      - With O(backend=static_pod), add or move the hostPath volume and mount for flags that name a host dir
        (kube-controller-manager C(flex-volume-plugin-dir) -> volume C(flexvolume-dir)).
    type: bool
    default: true
  backup:
    description:
      - Keep a copy of the previous file. Static pod manifests get a hidden copy (C(.<name>.<time>.bak)) because
        kubelet would run a visible copy in the manifests dir as a second pod.
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
  - Needs PyYAML on the node for O(backend=static_pod) and O(backend=config_list).
  - A malformed file fails with its path and line and is left untouched.
seealso:
  - module: kubestorage.enablement.kubelet_config
  - module: kubestorage.enablement.kubelet_info
"""

EXAMPLES = r"""
- name: kubelet's plugin dir and a gate, in /etc/default/kubelet (kubeadm, Debian)
  kubestorage.enablement.component_flags:
    component: kubelet
    backend: env_file
    path: /etc/default/kubelet
    flags:
      volume-plugin-dir: /var/lib/kubelet/volumeplugins
    feature_gates:
      CSIPersistentVolume: true   # written on 1.10, dropped with a warning on 1.25

- name: The controller-manager's flex dir, with kubeadm's flexvolume-dir volume moved along
  kubestorage.enablement.component_flags:
    component: kube-controller-manager
    backend: static_pod
    path: /etc/kubernetes/manifests/kube-controller-manager.yaml
    flags:
      flex-volume-plugin-dir: /var/lib/kubelet/volumeplugins
    backup: true

- name: 1.9-era CSI on the API server
  kubestorage.enablement.component_flags:
    component: kube-apiserver
    backend: static_pod
    path: /etc/kubernetes/manifests/kube-apiserver.yaml
    flags:
      allow-privileged: true
    runtime_config:
      storage.k8s.io/v1alpha1: true
    feature_gates:
      CSIPersistentVolume: true
      MountPropagation: true

- name: k3s
  kubestorage.enablement.component_flags:
    component: kubelet
    backend: config_list
    path: /etc/rancher/k3s/config.yaml
    flags:
      volume-plugin-dir: /var/lib/kubelet/volumeplugins
"""

RETURN = r"""
path:
  description: The file that was managed.
  returned: always
  type: str
flags:
  description: All flags in the file after the task, name (without dashes) to value (null for a bare flag).
  returned: always
  type: dict
  sample: {volume-plugin-dir: /var/lib/kubelet/volumeplugins, feature-gates: CSIInlineVolume=true}
feature_gates:
  description: The resulting C(--feature-gates) map.
  returned: always
  type: dict
  sample: {CSIInlineVolume: true}
dropped:
  description: Gates and flags left out because the component's version would refuse them, with the reason.
  returned: always
  type: dict
kubernetes_version:
  description: The version the gates and flags were checked against (null when unknown).
  returned: always
  type: str
restart_required:
  description:
    - Whether the component must be restarted to use the change. It is false for static pods, which kubelet
      restarts by itself when their manifest changes.
  returned: always
  type: bool
daemon_reload_required:
  description: Whether a systemd drop-in changed, so that C(systemctl daemon-reload) is needed.
  returned: always
  type: bool
backup_file:
  description: The copy of the previous file, when O(backup=true) and the file changed.
  returned: when a backup was made
  type: str
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils import feature_gates as fg
from ansible_collections.kubestorage.enablement.plugins.module_utils.component_settings import (
    SettingsError,
    image_version,
    plan_flags,
)
from ansible_collections.kubestorage.enablement.plugins.module_utils.flag_files import FlagFileError
from ansible_collections.kubestorage.enablement.plugins.module_utils.kubelet_node import kubelet_version
from ansible_collections.kubestorage.enablement.plugins.module_utils.text_files import apply_text, edit_lock, read_text


def detect_version(module, component, backend, text):
    given = module.params["kubernetes_version"]
    if given:
        return "%d.%d.%d" % fg.parse_version(given)
    if backend == "static_pod":
        container = module.params["container"] or component
        version = image_version(text, container)
        if version:
            return version
        raise SettingsError("path %s: no image of container %s with a version tag in this manifest, so the version "
                            "of %s is unknown; check that path is the %s manifest (set container when its container "
                            "has another name), or give kubernetes_version, e.g. '1.25'"
                            % (module.params["path"], container, component, component))
    version = kubelet_version(module) if component == "kubelet" else None
    if version:
        return version
    raise SettingsError("kubernetes_version: cannot detect the version of %s (no kubelet binary or image tag); "
                        "give kubernetes_version, e.g. '1.25'" % component)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            component=dict(type="str", required=True,
                           choices=["kubelet", "kube-controller-manager", "kube-apiserver", "kube-scheduler"]),
            backend=dict(type="str", required=True, choices=["env_file", "static_pod", "systemd_dropin", "config_list"]),
            path=dict(type="path", required=True),
            variable=dict(type="str"),
            container=dict(type="str"),
            key=dict(type="str", no_log=False),
            flags=dict(type="dict", default={}),
            feature_gates=dict(type="dict", default={}),
            runtime_config=dict(type="dict", default={}),
            kubernetes_version=dict(type="str"),
            gate_policy=dict(type="str", default="drop_obsolete", choices=["drop_obsolete", "strict"]),
            mount_host_dirs=dict(type="bool", default=True),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    component, backend, path = p["component"], p["backend"], p["path"]
    if backend in ("env_file", "systemd_dropin"):
        selector = p["variable"] or ("KUBELET_EXTRA_ARGS" if component == "kubelet" else None)
        if not selector:
            module.fail_json(msg="variable: required for %s with backend %s (the variable that holds its flags)"
                             % (component, backend))
    elif backend == "static_pod":
        selector = p["container"] or component
    else:
        selector = p["key"] or "%s-arg" % component
    for gate, value in p["feature_gates"].items():
        if value is not None and not isinstance(value, bool):
            module.fail_json(msg="feature_gates.%s: %r is not true, false or null" % (gate, value))

    # Read, plan and write under one lock: a concurrent run edits the result of this one.
    with edit_lock(path, enabled=not module.check_mode):
        try:
            text = read_text(path)
            if text is None and backend == "static_pod":
                raise SettingsError("path %s: no such manifest; static pod manifests are written by kubeadm, check the "
                                    "path" % path)
            version = detect_version(module, component, backend, text)
            plan = plan_flags(component, backend, text, selector, path, flags=p["flags"],
                              feature_gates=p["feature_gates"], runtime_config=p["runtime_config"], version=version,
                              policy=p["gate_policy"], mount_host_dirs=p["mount_host_dirs"])
        except (SettingsError, FlagFileError, fg.GateError) as exc:
            module.fail_json(msg=exc.msg, path=path)

        result = dict(path=path, flags=plan["flags"], feature_gates=plan["feature_gates"], dropped=plan["dropped"],
                      kubernetes_version=version)
        for warning in plan["warnings"]:
            module.warn(warning)
        changed = apply_text(module, path, text, plan["text"], result, backup=p["backup"],
                             backup_hidden=backend == "static_pod", mode=0o600 if backend == "static_pod" else 0o644)
        result.update(restart_required=changed and backend != "static_pod",
                      daemon_reload_required=changed and backend == "systemd_dropin")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
