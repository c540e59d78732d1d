# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/audit_report.py.

The facts are shaped like the RETURN of kubelet_info, flexvolume_driver_info and component_flags
(check mode, default gate policy: refused entries are in ``dropped``, not in ``flags``), and like
the objects kubernetes.core.k8s_info returns for CSIDrivers and StorageClasses.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/unit/plugins/module_utils/test_audit_report.py
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from ansible_collections.kubestorage.enablement.plugins.module_utils import audit_report as ar

DEFAULT_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/"
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_L = "c" * 64
WHEN = "2025-01-02T03:04:05Z"


def kubelet_info(version, layout="kubeadm", runtime=None, propagation=None, files=None):
    return {
        "changed": False,
        "layout": layout,
        "files": files or {"env_file": "/etc/default/kubelet", "kubeadm_flags": "/var/lib/kubelet/kubeadm-flags.env",
                           "dropin": "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
                           "kubelet_config": "/var/lib/kubelet/config.yaml"},
        "kubernetes_version": version,
        "runtimes": [runtime or {"name": "containerd", "unit_file": "/usr/lib/systemd/system/containerd.service",
                                 "mount_flags": None, "active": True, "propagation": "shared"}],
        "propagation": propagation or {"/": "shared", "/var/lib/kubelet": "shared"},
        "systemd": True,
        "kubelet": {"active": True, "pid": 812, "started_at": 1735786800.0, "unread_files": []},
    }


def driver(name, checksum, plugin_dir=DEFAULT_DIR, loads=True, probe_error=None):
    vendor, exe = name.split("/")
    info = {"name": name, "vendor": vendor, "driver": exe, "dir": "%s%s~%s" % (plugin_dir, vendor, exe),
            "path": "%s%s~%s/%s" % (plugin_dir, vendor, exe, exe), "checksum": checksum, "size": 4711, "mode": "0755",
            "owner": "root", "group": "root", "backups": 0, "loads": loads}
    if loads:
        info.update(init={"status": "Success", "capabilities": {"attach": False}},
                    capabilities={"attach": False, "selinuxRelabel": True, "supportsMetrics": False, "fsGroup": True,
                                  "requiresFSResize": True}, probe_error=None)
    else:
        info.update(init=None, capabilities=None, probe_error=probe_error)
    return info


def flex(drivers, plugin_dir=DEFAULT_DIR, problems=None):
    return {"changed": False, "plugin_dir": plugin_dir.rstrip("/"), "exists": True, "drivers": drivers,
            "problems": problems or []}


def flags_result(path, version, flags=None, gates=None, dropped=None):
    flags = dict(flags or {})
    gates = dict(gates or {})
    if gates:
        flags["feature-gates"] = ",".join("%s=%s" % (k, "true" if v else "false") for k, v in sorted(gates.items()))
    return {"changed": False, "path": path, "flags": flags, "feature_gates": gates, "dropped": dict(dropped or {}),
            "kubernetes_version": version, "restart_required": False, "daemon_reload_required": False}


def fleet():
    """cp1 (1.33, control plane), w1 (1.25), w2 (1.10) and w3 (unreachable)."""
    lvm_error = "init command failed, status: Failure, reason: jq: command not found"
    w1_lvm = driver("example.com/lvm", SHA_L, loads=False, probe_error=lvm_error + "; output: '...'")
    return {
        "cp1": {
            "groups": ["control_plane"],
            "kubelet": kubelet_info("1.33.0"),
            "flexvolume": flex([driver("example.com/nfs", SHA_A)]),
            "kubelet_flags": [
                flags_result("/var/lib/kubelet/kubeadm-flags.env", "1.33.0",
                             {"container-runtime-endpoint": "unix:///run/containerd/containerd.sock"}),
                flags_result("/etc/default/kubelet", "1.33.0"),
            ],
            # a raw KubeletConfiguration is not filtered by version: ReadWriteOncePod was removed in 1.31
            "kubelet_config": {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                               "featureGates": {"ReadWriteOncePod": True}},
            "controller_manager": flags_result("/etc/kubernetes/manifests/kube-controller-manager.yaml", "1.33.0",
                                               {"flex-volume-plugin-dir": "/var/lib/kubelet/volumeplugins",
                                                "cluster-name": "kubernetes"}),
            "apiserver": flags_result("/etc/kubernetes/manifests/kube-apiserver.yaml", "1.33.0",
                                      {"allow-privileged": "true"}),
            "unreachable": None,
            "error": None,
        },
        "w1": {
            "groups": ["workers"],
            "kubelet": kubelet_info("1.25.3", runtime={
                "name": "docker", "unit_file": "/lib/systemd/system/docker.service", "mount_flags": "slave", "active": True,
                "propagation": "slave"}),
            "flexvolume": flex([driver("example.com/nfs", SHA_A), w1_lvm], problems=[
                {"path": w1_lvm["path"], "problem": "kubelet would fail to load example.com/lvm: " + lvm_error}]),
            "kubelet_flags": [flags_result(
                "/etc/default/kubelet", "1.25.3", gates={"ExpandCSIVolumes": True},
                dropped={"CSIPersistentVolume": "removed in 1.16: kubelet 1.25 would refuse to start with 'failed to set feature "
                                                "gates from initial flags-based config: unrecognized feature gate: "
                                                "CSIPersistentVolume'",
                         "allow-privileged": "removed in 1.15: kubelet 1.25 would refuse to start with 'unknown flag: "
                                             "--allow-privileged'"})],
            "kubelet_config": {"featureGates": {"CSIMigration": True}},
            "controller_manager": None,
            "apiserver": None,
        },
        "w2": {
            "groups": ["workers"],
            "kubelet": kubelet_info("1.10.13", layout="kubespray", files={"env_file": "/etc/kubernetes/kubelet.env"}),
            "flexvolume": flex([driver("example.com/nfs", SHA_B, plugin_dir="/home/kubernetes/flexvolume/")],
                               plugin_dir="/home/kubernetes/flexvolume/"),
            "kubelet_flags": [flags_result("/etc/kubernetes/kubelet.env", "1.10.13",
                                           {"volume-plugin-dir": "/home/kubernetes/flexvolume", "allow-privileged": "true"},
                                           gates={"CSIPersistentVolume": True, "MountPropagation": True})],
            "kubelet_config": None,
            "controller_manager": {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"},
            "apiserver": None,
        },
        "w3": {"groups": ["workers"], "unreachable": "Failed to connect to the host via ssh: ssh: connect to host w3 port 22: "
                                                     "No route to host", "kubelet": None, "flexvolume": None, "kubelet_flags": []},
    }


def storage_class(name, provisioner, default=None, beta=False):
    meta = {"name": name}
    if default is not None:
        key = "storageclass.beta.kubernetes.io/is-default-class" if beta else "storageclass.kubernetes.io/is-default-class"
        meta["annotations"] = {key: default}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta, "provisioner": provisioner,
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


def csidriver(name):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": name},
            "spec": {"attachRequired": False, "podInfoOnMount": True, "fsGroupPolicy": "File",
                     "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}


def api():
    return {"csidrivers": [csidriver("hostpath.csi.k8s.io")],
            "storageclasses": [storage_class("standard", "hostpath.csi.k8s.io", "true"),
                               storage_class("local", "kubernetes.io/no-provisioner", "true", beta=True),
                               storage_class("legacy-nfs", "example.com/nfs-provisioner", "false")],
            "error": None}


@pytest.fixture(name="report")
def report_fixture():
    return ar.build_report(fleet(), api(), generated_at=WHEN)


def find(report, kind, host="any", subject=None):
    found = [f for f in report["findings"] if f["kind"] == kind]
    found = [f for f in found if (host == "any" or f["host"] == host) and (subject is None or subject in f["subject"])]
    assert found, "no %s finding for %s %s in %s" % (kind, host, subject, json.dumps(report["findings"], indent=1))
    return found


def one(report, kind, host="any", subject=None):
    found = find(report, kind, host, subject)
    assert len(found) == 1, found
    return found[0]


def says(finding, *parts):
    for part in parts:
        assert part in finding["message"], (part, finding["message"])
    assert "Fix:" in finding["message"], finding["message"]


# ---------------------------------------------------------------------------------------------
# Findings of the problem fleet


def test_node_unreachable(report):
    finding = one(report, "node_unreachable", "w3")
    assert finding["severity"] == "error"
    says(finding, "w3", "No route to host", "SSH")
    assert report["nodes"]["w3"]["reachable"] is False
    assert report["summary"]["nodes_unreachable"] == 1


def test_driver_checksum_drift_names_majority(report):
    finding = one(report, "driver_checksum_drift", None, "example.com/nfs")
    assert finding["severity"] == "warning"
    says(finding, "example.com/nfs", SHA_A[:12] + " on cp1, w1", SHA_B[:12] + " on w2", "majority (cp1, w1)",
         "reinstall example.com/nfs on w2")
    entry = report["drivers"]["example.com/nfs"]
    assert entry["checksums"] == {SHA_A: ["cp1", "w1"], SHA_B: ["w2"]}
    assert entry["majority"] == SHA_A


def test_driver_missing_within_group(report):
    finding = one(report, "driver_missing", "w2", "example.com/lvm")
    assert finding["severity"] == "warning"
    says(finding, "w2", "example.com/lvm", "workers", "w1", "install example.com/lvm on w2")
    # cp1 is alone in its group: not missing there; the unreachable w3 is not audited
    assert [f["host"] for f in report["findings"] if f["kind"] == "driver_missing"] == ["w2"]
    assert report["drivers"]["example.com/lvm"]["missing_on"] == ["cp1", "w2"]


def test_driver_rejected_once_per_driver(report):
    finding = one(report, "driver_rejected", "w1")
    assert finding["severity"] == "error"
    says(finding, "w1", "example.com/lvm", "jq: command not found", "reinstall")
    assert report["nodes"]["w1"]["drivers"]["example.com/lvm"]["probe"] == "failed"
    assert report["nodes"]["w1"]["drivers"]["example.com/nfs"] == {
        "sha256": SHA_A, "version": None, "probe": "ok", "probe_error": None, "path": DEFAULT_DIR + "example.com~nfs/nfs"}


def test_plugin_dir_mismatch_against_every_node(report):
    finding = one(report, "plugin_dir_mismatch", "cp1")
    assert finding["severity"] == "error"
    says(finding, "cp1", "--flex-volume-plugin-dir is /var/lib/kubelet/volumeplugins", "kube-controller-manager.yaml",
         DEFAULT_DIR.rstrip("/") + " on cp1, w1", "/home/kubernetes/flexvolume on w2",
         "--flex-volume-plugin-dir=" + DEFAULT_DIR.rstrip("/"))
    assert report["nodes"]["cp1"]["controller_manager_plugin_dir"] == "/var/lib/kubelet/volumeplugins"
    assert report["nodes"]["w2"]["controller_manager_plugin_dir"] is None


def test_plugin_dir_inconsistent(report):
    finding = one(report, "plugin_dir_inconsistent", None)
    assert finding["severity"] == "warning"
    says(finding, "/home/kubernetes/flexvolume on w2", "cp1, w1", "--volume-plugin-dir")
    assert report["nodes"]["w2"]["kubelet_plugin_dir"] == "/home/kubernetes/flexvolume"
    assert report["nodes"]["w2"]["kubelet_plugin_dir_origin"] == "flag"
    assert report["nodes"]["w1"]["kubelet_plugin_dir"] == DEFAULT_DIR
    assert report["nodes"]["w1"]["kubelet_plugin_dir_origin"] == "default"


def test_gate_refused_dropped_by_component_flags(report):
    finding = one(report, "gate_refused", "w1", "CSIPersistentVolume")
    assert finding["severity"] == "error"
    says(finding, "w1", "CSIPersistentVolume", "/etc/default/kubelet", "kubelet 1.25.3", "removed in 1.16",
         "unrecognized feature gate", "remove CSIPersistentVolume")
    assert report["nodes"]["w1"]["gates"]["kubelet"]["CSIPersistentVolume"] == {
        "value": True, "status": "removed", "source": "/etc/default/kubelet"}


def test_gate_refused_checked_from_kubelet_config(report):
    finding = one(report, "gate_refused", "cp1", "ReadWriteOncePod")
    says(finding, "cp1", "ReadWriteOncePod=true", "/var/lib/kubelet/config.yaml", "kubelet 1.33.0", "removed in 1.31",
         "kubestorage.enablement.kubelet_config")


def test_gate_accepted_on_old_node_is_fine(report):
    gates = report["nodes"]["w2"]["gates"]["kubelet"]
    assert gates["CSIPersistentVolume"]["status"] == "beta"
    assert not [f for f in report["findings"] if f["host"] == "w2" and f["kind"] in ("gate_refused", "gate_ga")]


def test_gate_ga_with_removal_release(report):
    finding = one(report, "gate_ga", "w1", "CSIMigration")
    assert finding["severity"] == "warning"
    says(finding, "w1", "CSIMigration=true", "GA since 1.25", "removed in 1.27", "before upgrading to 1.27")
    says(one(report, "gate_ga", "w1", "ExpandCSIVolumes"), "GA since 1.24", "removed in 1.27", "/etc/default/kubelet")


def test_flag_removed(report):
    finding = one(report, "flag_removed", "w1", "allow-privileged")
    assert finding["severity"] == "error"
    says(finding, "w1", "--allow-privileged", "kubelet", "removed in 1.15", "remove --allow-privileged")
    # 1.10 kubelet and kube-apiserver still accept it
    assert [f["host"] for f in report["findings"] if f["kind"] == "flag_removed"] == ["w1"]


def test_flag_removed_checked_when_component_flags_had_no_version():
    nodes = {"w1": {"groups": ["workers"], "kubelet": kubelet_info("1.25.3"),
                    "kubelet_flags": [flags_result("/etc/default/kubelet", None, {"allow-privileged": "true"},
                                                   gates={"CSIPersistentVolume": True})]}}
    report = ar.build_report(nodes, generated_at=WHEN)
    says(one(report, "flag_removed", "w1"), "--allow-privileged", "removed in 1.15", "unknown flag: --allow-privileged")
    says(one(report, "gate_refused", "w1", "CSIPersistentVolume"), "removed in 1.16", "kubestorage.enablement.component_flags")


def test_mount_not_shared_runtime(report):
    finding = one(report, "mount_not_shared", "w1", "docker")
    assert finding["severity"] == "error"
    says(finding, "w1", "docker", "MountFlags=slave", "propagation slave", "MountFlags=shared", "daemon-reload")
    assert report["nodes"]["w1"]["runtimes"][0]["mount_flags"] == "slave"


def test_mount_not_shared_paths():
    nodes = {"n1": {"groups": [], "kubelet": kubelet_info("1.33.0", propagation={"/": "private", "/var/lib/kubelet": "private"})}}
    report = ar.build_report(nodes, generated_at=WHEN)
    found = find(report, "mount_not_shared", "n1")
    assert sorted(f["subject"] for f in found) == ["mount /", "mount /var/lib/kubelet"]
    says(found[0], "n1", "private", "mount --make-rshared /")


def test_multiple_default_storageclasses_including_beta_annotation(report):
    finding = one(report, "multiple_default_storageclasses", None)
    assert finding["severity"] == "error"
    says(finding, "local", "standard", "kubectl annotate storageclass")
    assert report["api"]["default_storageclasses"] == ["local", "standard"]


def test_storageclass_unknown_provisioner(report):
    finding = one(report, "storageclass_unknown_provisioner", None, "legacy-nfs")
    assert finding["severity"] == "warning"
    says(finding, "legacy-nfs", "example.com/nfs-provisioner", "hostpath.csi.k8s.io")
    # in-tree kubernetes.io/* and CSIDriver names are known
    assert len(find(report, "storageclass_unknown_provisioner")) == 1


def test_no_default_storageclass_is_info():
    report = ar.build_report({}, {"csidrivers": [], "storageclasses": [storage_class("a", "kubernetes.io/no-provisioner")]},
                             generated_at=WHEN)
    finding = one(report, "no_default_storageclass", None)
    assert finding["severity"] == "info"
    says(finding, "storageclass.kubernetes.io/is-default-class")


def test_api_not_queried_is_info_and_error_is_warning():
    report = ar.build_report({}, None, generated_at=WHEN)
    assert one(report, "api_unreachable", None)["severity"] == "info"
    assert report["api"]["queried"] is False
    report = ar.build_report({}, {"csidrivers": [], "storageclasses": [], "error": "Unauthorized"}, generated_at=WHEN)
    finding = one(report, "api_unreachable", None)
    assert finding["severity"] == "warning"
    says(finding, "Unauthorized")
    # a failed query says nothing about default classes
    assert not [f for f in report["findings"] if f["kind"] == "no_default_storageclass"]


def test_every_finding_names_its_host_subject_and_fix(report):
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds == {"node_unreachable", "driver_checksum_drift", "driver_missing", "driver_rejected", "plugin_dir_mismatch",
                     "plugin_dir_inconsistent", "gate_refused", "gate_ga", "flag_removed", "mount_not_shared",
                     "multiple_default_storageclasses", "storageclass_unknown_provisioner"}
    for finding in report["findings"]:
        assert set(finding) == {"severity", "kind", "host", "subject", "message"}
        assert finding["severity"] == ar.KINDS[finding["kind"]]
        if finding["host"]:
            assert finding["message"].startswith(finding["host"] + ": ")
        assert "Fix:" in finding["message"]


def test_findings_sorted_errors_first_and_summary_counts(report):
    order = [ar.SEVERITIES.index(f["severity"]) for f in report["findings"]]
    assert order == sorted(order)
    summary = report["summary"]
    assert summary["findings"] == len(report["findings"])
    assert sum(summary["by_severity"].values()) == len(report["findings"])
    assert summary["by_kind"]["gate_refused"] == 2
    assert summary["by_kind"]["gate_ga"] == 2
    assert summary["by_kind"]["no_default_storageclass"] == 0
    assert set(summary["by_kind"]) == set(ar.KINDS)
    assert summary["nodes"] == 4 and summary["drivers"] == 2


def test_node_rows(report):
    cp1 = report["nodes"]["cp1"]
    assert cp1["control_plane"] is True
    assert cp1["kubernetes_version"] == "1.33.0" and cp1["layout"] == "kubeadm"
    assert cp1["versions"] == {"kubelet": "1.33.0", "kube-controller-manager": "1.33.0", "kube-apiserver": "1.33.0"}
    assert cp1["propagation"] == {"/": "shared", "/var/lib/kubelet": "shared"}
    assert set(cp1["gates"]) == {"kubelet", "kube-controller-manager", "kube-apiserver"}
    assert report["nodes"]["w2"]["control_plane"] is False  # skipped controller-manager task
    assert report["nodes"]["w2"]["flexvolume_dir_scanned"] == "/home/kubernetes/flexvolume"


def test_failed_fact_tasks():
    nodes = {
        "w1": {"groups": ["workers"], "kubelet": kubelet_info("1.25.3"),
               "kubelet_flags": [{"failed": True, "path": "/etc/default/kubelet",
                                  "msg": "CSIMigration=false on kubelet 1.25: CSIMigration is GA and locked to true from 1.25; kubelet "
                                         "1.25 would refuse to start with 'failed to set feature gates from initial flags-based "
                                         "config: cannot set feature gate CSIMigration to false, feature is locked to true'. "
                                         "Fix: remove CSIMigration from the feature gates or set it to true. Nothing was changed."}],
               "flexvolume": {"failed": True, "msg": "plugin_dir /x: Permission denied"},
               "error": "one task failed"},
    }
    report = ar.build_report(nodes, generated_at=WHEN)
    says(one(report, "gate_refused", "w1"), "w1", "cannot set feature gate CSIMigration to false", "/etc/default/kubelet")
    incomplete = find(report, "facts_incomplete", "w1")
    assert sorted(f["subject"] for f in incomplete) == ["FlexVolume drivers (flexvolume_driver_info)", "node w1"]
    assert report["nodes"]["w1"]["drivers"] is None


def test_kubelet_config_result_and_flag_precedence():
    config_result = {"changed": False, "path": "/var/lib/kubelet/config.yaml", "kubernetes_version": "1.25.3",
                     "config": {"volumePluginDir": "/var/lib/kubelet/volumeplugins", "featureGates": {}},
                     "feature_gates": {}, "dropped": {"CSINodeInfo": "removed in 1.21: kubelet 1.25 would refuse to start"}}
    nodes = {"w1": {"groups": [], "kubelet": kubelet_info("1.25.3"), "kubelet_config": config_result}}
    report = ar.build_report(nodes, generated_at=WHEN)
    row = report["nodes"]["w1"]
    assert (row["kubelet_plugin_dir"], row["kubelet_plugin_dir_origin"]) == ("/var/lib/kubelet/volumeplugins", "config")
    says(one(report, "gate_refused", "w1", "CSINodeInfo"), "kubestorage.enablement.kubelet_config")
    nodes["w1"]["kubelet_flags"] = [flags_result("/a", "1.25.3", {"volume-plugin-dir": "/first"}),
                                    flags_result("/b", "1.25.3", {"volume-plugin-dir": "/second"})]
    row = ar.build_report(nodes, generated_at=WHEN)["nodes"]["w1"]
    assert (row["kubelet_plugin_dir"], row["kubelet_plugin_dir_origin"], row["kubelet_plugin_dir_source"]) == ("/second", "flag", "/b")


def test_drift_without_majority_is_fleet_wide():
    nodes = {host: {"groups": ["g"], "kubelet": kubelet_info("1.33.0"), "flexvolume": flex([driver("x.io/d", sha)])}
             for host, sha in (("n1", SHA_A), ("n2", SHA_B))}
    report = ar.build_report(nodes, generated_at=WHEN)
    says(one(report, "driver_checksum_drift", None), "no checksum is on a majority")
    assert report["drivers"]["x.io/d"]["majority"] is None


# ---------------------------------------------------------------------------------------------
# A clean fleet


def clean_fleet():
    nodes = fleet()
    del nodes["w3"]
    del nodes["w2"]
    for host in ("cp1", "w1"):
        node = nodes[host]
        node["kubelet"] = kubelet_info("1.33.0")
        node["flexvolume"] = flex([driver("example.com/nfs", SHA_A)])
        node["kubelet_flags"] = [flags_result("/etc/default/kubelet", "1.33.0", gates={"VolumeAttributesClass": True})]
        node["kubelet_config"] = {"featureGates": {}}
    nodes["cp1"]["controller_manager"] = flags_result("/etc/kubernetes/manifests/kube-controller-manager.yaml", "1.33.0")
    nodes["cp1"]["apiserver"] = flags_result("/etc/kubernetes/manifests/kube-apiserver.yaml", "1.33.0", {"allow-privileged": "true"})
    cluster = {"csidrivers": [csidriver("hostpath.csi.k8s.io")],
               "storageclasses": [storage_class("standard", "hostpath.csi.k8s.io", "true"),
                                  storage_class("local", "kubernetes.io/no-provisioner")], "error": None}
    return nodes, cluster


def test_clean_fleet_has_no_errors_or_warnings():
    nodes, cluster = clean_fleet()
    report = ar.build_report(nodes, cluster, generated_at=WHEN)
    assert report["findings"] == []
    assert report["summary"]["by_severity"] == {"error": 0, "warning": 0, "info": 0}
    assert report["nodes"]["cp1"]["controller_manager_plugin_dir"] == DEFAULT_DIR
    assert "No findings." in ar.render_markdown(report)
    assert ar.at_least(report, "warning") == []


def test_at_least(report):
    errors = ar.at_least(report, "error")
    assert errors and all(f["severity"] == "error" for f in errors)
    assert len(ar.at_least(report, "warning")) == report["summary"]["by_severity"]["error"] + report["summary"]["by_severity"]["warning"]


# ---------------------------------------------------------------------------------------------
# Determinism, JSON and Markdown


def test_report_is_json_serializable_and_deterministic(report):
    text = ar.report_json(report)
    assert json.loads(text) == report
    reordered = dict(reversed(list(fleet().items())))
    again = ar.build_report(reordered, api(), generated_at=WHEN)
    assert ar.report_json(again) == text
    assert ar.render_markdown(again) == ar.render_markdown(report)


def test_input_is_not_modified():
    nodes = fleet()
    before = copy.deepcopy(nodes)
    ar.build_report(nodes, api(), generated_at=WHEN)
    assert nodes == before


def test_markdown_contains_every_finding_and_sections(report):
    text = ar.render_markdown(report)
    assert text.startswith("# Storage audit report\n")
    assert "Generated at: " + WHEN in text
    for heading in ("## Summary", "## Findings", "### Errors", "### Warnings", "## Nodes", "## FlexVolume drivers",
                    "## Kubernetes API", "### CSIDrivers", "### StorageClasses"):
        assert heading in text
    assert text.index("### Errors") < text.index("### Warnings")
    for finding in report["findings"]:
        assert finding["message"].replace("|", "\\|") in text
    assert SHA_A in text and SHA_A[:12] in text
    assert "| w3 | workers | unreachable |" in text


def test_markdown_escapes_pipes():
    nodes = {"n|1": {"groups": [], "unreachable": "a|b"}}
    text = ar.render_markdown(ar.build_report(nodes, generated_at=WHEN))
    assert "n\\|1" in text and "a\\|b" in text
    rows = [line for line in text.splitlines() if line.startswith("| n\\|1 | ")]
    assert len(rows) == 2  # the finding and the node
    node_row = rows[-1]
    assert len(re.split(r"(?<!\\)\|", node_row)) == 12  # 10 cells between 11 unescaped pipes


# ---------------------------------------------------------------------------------------------
# The module's rule: files unchanged except for the generation time are not changed


def test_unchanged_except_generated_at(report):
    later = ar.build_report(fleet(), api(), generated_at="2025-02-03T00:00:00Z")
    old = ar.plan_files(report, None, None)
    assert old["json"]["changed"] and old["markdown"]["changed"]
    plan = ar.plan_files(later, old["json"]["text"], old["markdown"]["text"])
    assert not plan["json"]["changed"] and not plan["markdown"]["changed"]
    assert plan["json"]["text"] != old["json"]["text"]  # only the time differs
    assert ar.json_unchanged(old["json"]["text"], plan["json"]["text"])
    assert ar.markdown_unchanged(old["markdown"]["text"], plan["markdown"]["text"])


def test_changed_when_content_differs(report):
    old = ar.plan_files(report, None, None)
    nodes = fleet()
    nodes["w2"]["flexvolume"]["drivers"][0]["checksum"] = SHA_A
    plan = ar.plan_files(ar.build_report(nodes, api(), generated_at=WHEN), old["json"]["text"], old["markdown"]["text"])
    assert plan["json"]["changed"] and plan["markdown"]["changed"]


def test_changed_when_old_file_is_not_ours(report):
    text = ar.report_json(report)
    assert not ar.json_unchanged(json.dumps(report), text)  # same content, other formatting
    assert not ar.json_unchanged("not json", text)
    assert not ar.json_unchanged("[]", text)
    assert not ar.json_unchanged(None, text)
    markdown = ar.render_markdown(report)
    assert not ar.markdown_unchanged(None, markdown)
    assert not ar.markdown_unchanged(markdown.replace("## Nodes", "## Hosts"), markdown)


def test_bad_input():
    with pytest.raises(ar.AuditError):
        ar.build_report(["cp1"])
    with pytest.raises(ar.AuditError) as exc:
        ar.build_report({"cp1": "facts"})
    assert "nodes.cp1" in exc.value.msg
