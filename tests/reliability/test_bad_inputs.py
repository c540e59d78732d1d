# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bad input matrix: every case is one ansible-playbook run of a module or role with one bad
input, against the converged lab nodes and the fake API server.

For each case: the play fails, the failed task's message names the input and the problem (each
regex of `expect` must match it), and the fingerprints of both nodes and of every object in the
fake API server are identical before and after.
"""

import re

import pytest

from conftest import HOSTPATH as DEPLOYED, PLUGIN_DIR

FV = "kubestorage.enablement.flexvolume_driver"
FLAGS = "kubestorage.enablement.component_flags"
KCONF = "kubestorage.enablement.kubelet_config"
CSI = "kubestorage.enablement.csi_driver"
SC = "kubestorage.enablement.storage_class"
ZEROS = "sha256:" + "0" * 64
HOSTPATH = dict(DEPLOYED, kubeconfig="{{ kubeconfig }}")   # the driver the session deployed
# A driver the API server does not have yet: its first write is the one an injected error hits.
SECOND = dict(HOSTPATH, name="second.csi.example.com", storage_classes=[],
              driver_args=["--drivername=second.csi.example.com", "--endpoint=$(CSI_ENDPOINT)"])


class Case(object):
    def __init__(self, id, hosts, task, expect, inject=None):
        self.id, self.hosts, self.task, self.expect, self.inject = id, hosts, task, expect, inject


def role(name, **variables):
    return {"ansible.builtin.include_role": {"name": "kubestorage.enablement." + name}, "vars": variables}


CASES = [
    # ---- FlexVolume drivers
    Case("flexvolume: path traversal in the vendor", "cp1", {FV: {"name": "../../etc~evil", "src": "{{ v2 }}"}},
         [r"\.\./\.\./etc~evil", r"vendor"]),
    Case("flexvolume: path traversal in the driver", "cp1", {FV: {"name": "reliability~../../../bin/sh",
                                                                  "src": "{{ v2 }}"}},
         [r"reliability~\.\./\.\./\.\./bin/sh", r"driver"]),
    Case("flexvolume: vendor that is not a DNS subdomain", "cp1", {FV: {"name": "Example_Corp~nfs", "src": "{{ v2 }}"}},
         [r"Example_Corp~nfs", r"DNS-1123"]),
    Case("flexvolume: checksum mismatch", "cp1", {FV: {"name": "reliability~good", "src": "{{ v2 }}",
                                                       "checksum": ZEROS}},
         [r"checksum", r"good-v2", r"0{64}"]),
    Case("flexvolume: malformed checksum", "cp1", {FV: {"name": "reliability~good", "src": "{{ v2 }}",
                                                        "checksum": "md5:d41d8cd98f00b204e9800998ecf8427e"}},
         [r"checksum", r"md5:d41d8cd98f00b204e9800998ecf8427e", r"sha256"]),
    Case("flexvolume: missing src file", "cp1", {FV: {"name": "reliability~good", "src": "/nonexistent/driver"}},
         [r"/nonexistent/driver"]),
    Case("flexvolume: missing remote_src file", "cp1", {FV: {"name": "reliability~good", "remote_src": "/opt/no-driver"}},
         [r"/opt/no-driver"]),
    Case("flexvolume: non-executable mode", "cp1", {FV: {"name": "reliability~good", "src": "{{ v2 }}", "mode": "0644"}},
         [r"mode", r"0o?644", r"execute"]),
    Case("flexvolume: upgrade to a driver whose init fails", "cp1",
         {FV: {"name": "reliability~good", "src": "{{ failing }}"}},
         [r"reliability[~/]good", r"this version cannot load", r"[Nn]othing was changed"]),
    Case("flexvolume: driver that prints no JSON", "cp1", {FV: {"name": "reliability~good", "src": "{{ not_json }}"}},
         [r"reliability[~/]good", r"segmentation fault", r"JSON"]),
    Case("flexvolume: driver whose init hangs", "cp1", {FV: {"name": "reliability~good", "src": "{{ hangs }}",
                                                             "init_timeout": 2}},
         [r"reliability[~/]good", r"2 ?s|timed out|timeout"]),
    Case("flexvolume: capabilities other than required", "cp1",
         {FV: {"name": "reliability~good", "src": "{{ attach }}", "required_capabilities": {"attach": False}}},
         [r"reliability[~/]good", r"attach"]),
    Case("flexvolume: a command the driver requires is missing", "cp1",
         {FV: {"name": "reliability~good", "src": "{{ v2 }}", "requires": ["no-such-tool-kubestorage"]}},
         [r"no-such-tool-kubestorage"]),
    Case("flexvolume role: a driver without a name", "cp1", role("flexvolume", flexvolume_drivers=[{"src": "{{ v2 }}"}]),
         [r"flexvolume_drivers", r"name"]),
    # ---- kubelet and control-plane flags
    Case("flags: unknown component", "cp1", {FLAGS: {"component": "kube-proxy", "backend": "env_file",
                                                     "path": "/etc/default/kubelet", "variable": "KUBELET_EXTRA_ARGS"}},
         [r"component", r"kube-proxy"]),
    Case("flags: malformed env file", "cp1", {FLAGS: {"component": "kubelet", "backend": "env_file",
                                                      "path": "/root/reliability/unterminated.env",
                                                      "flags": {"volume-plugin-dir": PLUGIN_DIR},
                                                      "kubernetes_version": "1.33"}},
         [r"/root/reliability/unterminated.env", r"quot"]),
    Case("flags: manifest that is not YAML", "cp1", {FLAGS: {"component": "kube-apiserver", "backend": "static_pod",
                                                             "path": "/root/reliability/not-yaml-manifest.yaml",
                                                             "flags": {"allow-privileged": True},
                                                             "kubernetes_version": "1.33"}},
         [r"/root/reliability/not-yaml-manifest.yaml", r"YAML"]),
    Case("flags: manifest without the component's container", "cp1",
         {FLAGS: {"component": "kube-apiserver", "backend": "static_pod",
                  "path": "/root/reliability/no-container-manifest.yaml", "flags": {"allow-privileged": True}}},
         [r"/root/reliability/no-container-manifest.yaml", r"no image of container kube-apiserver"]),
    Case("flags: manifest without the component's container, version given", "cp1",
         {FLAGS: {"component": "kube-apiserver", "backend": "static_pod", "kubernetes_version": "1.33",
                  "path": "/root/reliability/no-container-manifest.yaml", "flags": {"allow-privileged": True}}},
         [r"/root/reliability/no-container-manifest.yaml", r"no container named 'kube-apiserver'", r"etcd"]),
    Case("flags: a flag the node's version removed (strict)", "cp1",
         {FLAGS: {"component": "kubelet", "backend": "env_file", "path": "/etc/default/kubelet",
                  "flags": {"allow-privileged": True}, "gate_policy": "strict"}},
         [r"allow-privileged", r"1\.15|removed", r"1\.33"]),
    Case("flags: a gate the node's version removed (strict)", "cp1",
         {KCONF: {"feature_gates": {"CSIPersistentVolume": True}, "gate_policy": "strict"}},
         [r"CSIPersistentVolume", r"1\.16|removed", r"1\.33"]),
    Case("flags: a gate value that is not a bool", "cp1",
         {KCONF: {"feature_gates": {"CSIInlineVolume": "maybe"}}},
         [r"feature_gates\.CSIInlineVolume", r"maybe"]),
    Case("flags: KubeletConfiguration that is not YAML", "cp1",
         {KCONF: {"path": "/root/reliability/not-yaml-config.yaml", "feature_gates": {"CSIInlineVolume": True},
                  "kubernetes_version": "1.25"}},
         [r"/root/reliability/not-yaml-config.yaml", r"YAML"]),
    Case("flags: a config file of another kind", "cp1",
         {KCONF: {"path": "/root/reliability/proxy-config.yaml", "settings": {"maxPods": 110},
                  "kubernetes_version": "1.33"}},
         [r"/root/reliability/proxy-config.yaml", r"KubeProxyConfiguration", r"KubeletConfiguration"]),
    Case("kubelet_storage role: a gate removed for the node's version (strict)", "w1",
         role("kubelet_storage", kubelet_storage_gate_policy="strict",
              kubelet_storage_feature_gates={"CSIDriverRegistry": True}),
         [r"CSIDriverRegistry", r"removed in 1\.2[12]", r"1\.25"]),
    Case("kubelet_storage role: an unknown gate policy", "w1", role("kubelet_storage", kubelet_storage_gate_policy="lax"),
         [r"kubelet_storage_gate_policy", r"lax"]),
    Case("control_plane_storage role: a removed gate for the API server (strict)", "cp1",
         role("control_plane_storage", control_plane_storage_gate_policy="strict",
              control_plane_storage_feature_gates={"CSIPersistentVolume": True}),
         [r"CSIPersistentVolume", r"1\.33"]),
    # ---- CSI through the API
    Case("csi_driver: invalid driver name", "localhost", {CSI: dict(HOSTPATH, name="Hostpath_CSI")},
         [r"Hostpath_CSI", r"name"]),
    Case("csi_driver: unknown sidecar", "localhost", {CSI: dict(HOSTPATH, sidecars={"teleporter": {}})},
         [r"teleporter", r"sidecars"]),
    Case("csi_driver: Kubernetes version older than supported", "localhost",
         {CSI: dict(HOSTPATH, kubernetes_version="1.20")}, [r"1\.20", r"1\.24"]),
    Case("csi_driver: missing kubeconfig", "localhost", {CSI: dict(HOSTPATH, kubeconfig="/nonexistent/kubeconfig")},
         [r"/nonexistent/kubeconfig"]),
    Case("csi_driver: immutable field change without recreate", "localhost",
         {CSI: dict(HOSTPATH, attach_required=True)}, [r"hostpath\.csi\.k8s\.io", r"attachRequired", r"recreate"]),
    Case("csi_driver: API answers 403", "localhost", {CSI: SECOND}, [r"403|[Ff]orbidden", r"second"],
         inject=("PATCH", 403)),
    Case("csi_driver: API answers 409 on every try", "localhost", {CSI: SECOND}, [r"409|[Cc]onflict", r"second"],
         inject=("PATCH", 409)),
    Case("csi_driver: API answers 500 on every try", "localhost", {CSI: SECOND}, [r"500|[Ii]nternal", r"second"],
         inject=("PATCH", 500)),
    Case("storage_class: unknown reclaim policy", "localhost",
         {SC: {"name": "csi-hostpath", "provisioner": "hostpath.csi.k8s.io", "reclaim_policy": "Keep",
               "kubeconfig": "{{ kubeconfig }}"}}, [r"reclaim_policy", r"Keep"]),
    Case("storage_class: parameters of an existing class changed", "localhost",
         {SC: {"name": "csi-hostpath", "provisioner": "hostpath.csi.k8s.io", "volume_binding_mode": "WaitForFirstConsumer",
               "parameters": {"type": "ssd"}, "kubeconfig": "{{ kubeconfig }}"}},
         [r"csi-hostpath", r"parameters", r"recreate"]),
]


def play_for(case, lab):
    play = {"name": case.id, "hosts": case.hosts, "gather_facts": False, "tasks": [dict(case.task, name=case.id)],
            "vars": dict((k, v) for k, v in lab.sources.items())}
    if case.hosts == "localhost":
        play.update(connection="local")
        play["vars"]["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
    return [play]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_clearly_and_changes_nothing(case, lab, apiserver):
    before_nodes, before_api = lab.fingerprints(), apiserver.fingerprint()
    if case.inject:
        apiserver.inject(case.inject[0], r".*", case.inject[1], times=100)
    try:
        run = lab.playbook(play_for(case, lab))
    finally:
        apiserver.clear_injections()
    message = run.failure_message()
    assert run.rc != 0 and message, "the play did not fail: %s" % run.summary()
    for pattern in case.expect:
        assert re.search(pattern, message), "%r not in the message: %s" % (pattern, message)
    assert apiserver.fingerprint() == before_api, "the API server's objects changed"
    after_nodes = lab.fingerprints()
    for node, before in before_nodes.items():
        assert after_nodes[node] == before, "%s changed:\n%s" % (node, "\n".join(
            sorted(set(after_nodes[node].splitlines()) ^ set(before.splitlines()))))
