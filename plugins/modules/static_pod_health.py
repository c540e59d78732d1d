#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: static_pod_health
short_description: Wait until a static pod runs what its manifest says and passes its liveness probe
version_added: 0.1.0
description:
  - After a static pod manifest changes (for example through M(kubestorage.enablement.component_flags)), kubelet
    replaces the pod's container. This module waits until that happened and the component is healthy.
  - The pod is back when a process runs the container's command and args (as its command line, or as the end of
    it), started after the manifest last changed, and the container's C(livenessProbe.httpGet) answers with a
    2xx or 3xx status. That is the request kubelet itself makes. Without an C(httpGet) probe, the component's
    default is used (kube-apiserver C(https://127.0.0.1:6443/livez), kube-controller-manager
    C(https://127.0.0.1:10257/healthz), kube-scheduler C(https://127.0.0.1:10259/healthz)).
  - Like kubelet's prober, HTTPS probes do not verify the certificate. The control-plane components serve
    self-signed certificates on localhost.
  - Never changes anything.
author:
  - kubestorage maintainers (@kubestorage)
options:
  path:
    description: The static pod manifest, for example C(/etc/kubernetes/manifests/kube-controller-manager.yaml).
    type: path
    required: true
  container:
    description: The container to check. Defaults to the manifest's first container.
    type: str
  health_url:
    description: Probe this URL instead of the one from the manifest's liveness probe.
    type: str
  wait:
    description: Poll until the pod is back or O(timeout) passes. With V(false), look once and report.
    type: bool
    default: true
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 120
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
"""

EXAMPLES = r"""
- name: Set kube-controller-manager's flex volume dir
  kubestorage.enablement.component_flags:
    component: kube-controller-manager
    backend: static_pod
    path: /etc/kubernetes/manifests/kube-controller-manager.yaml
    flags:
      flex-volume-plugin-dir: /var/lib/kubelet/volumeplugins
    backup: true
  register: kcm

- name: Wait until kubelet restarted it and it is healthy
  kubestorage.enablement.static_pod_health:
    path: /etc/kubernetes/manifests/kube-controller-manager.yaml
    timeout: 180
  when: kcm is changed
"""

RETURN = r"""
path:
  description: The manifest.
  returned: always
  type: str
healthy:
  description: Whether a process runs the manifest's command and the liveness probe passed.
  returned: always
  type: bool
container:
  description: The container that was checked.
  returned: always
  type: str
  sample: kube-controller-manager
pid:
  description: The PID of the process running the manifest's command, or null.
  returned: always
  type: int
url:
  description: The liveness probe URL that was requested (null when there is none).
  returned: always
  type: str
  sample: https://127.0.0.1:10257/healthz
detail:
  description: The probe's answer (V(HTTP 200)) or why the pod is not back yet.
  returned: always
  type: str
waited:
  description: Seconds waited until the pod was healthy.
  returned: when healthy and O(wait=true)
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils.static_pods import StaticPodError, check, wait


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            container=dict(type="str"),
            health_url=dict(type="str"),
            wait=dict(type="bool", default=True),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, path=params["path"])
    try:
        if params["wait"]:
            status = wait(params["path"], params["container"], params["health_url"], timeout=params["timeout"])
        else:
            status = check(params["path"], params["container"], params["health_url"])
    except StaticPodError as exc:
        module.fail_json(msg=str(exc), healthy=False, **result)
    result.update(healthy=status["healthy"], container=status["container"], pid=status["pid"], url=status["url"],
                  detail=status["detail"])
    if "waited" in status:
        result["waited"] = status["waited"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
