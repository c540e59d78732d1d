# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plan_flags / plan_kubelet_config (version-aware edits) and kubelet_node (layout detection)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kubestorage.enablement.plugins.module_utils import component_settings as cs
from ansible_collections.kubestorage.enablement.plugins.module_utils import kubelet_node as kn

LAB = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "lab", "image", "rootfs")
KCM = open(os.path.join(LAB, "usr/share/kubestorage-lab/manifests/kube-controller-manager.yaml")).read() \
    .replace("LAB_REGISTRY", "registry.k8s.io").replace("LAB_VERSION", "v1.25.3")
KUBELET_CONFIG = open(os.path.join(LAB, "var/lib/kubelet/config.yaml")).read()


def test_removed_gate_is_dropped_on_new_and_written_on_old_kubelets():
    text = "KUBELET_EXTRA_ARGS=--node-ip=10.0.0.1\n"
    new = cs.plan_flags("kubelet", "env_file", text, "KUBELET_EXTRA_ARGS", "/etc/default/kubelet",
                        feature_gates={"CSIPersistentVolume": True}, version="1.25")
    assert new["text"] == text and new["feature_gates"] == {}
    assert "CSIPersistentVolume" in new["dropped"] and new["warnings"]
    old = cs.plan_flags("kubelet", "env_file", text, "KUBELET_EXTRA_ARGS", "/etc/default/kubelet",
                        feature_gates={"CSIPersistentVolume": True}, version="1.10")
    assert old["feature_gates"] == {"CSIPersistentVolume": True}
    assert "--feature-gates=CSIPersistentVolume=true" in old["text"]


def test_strict_refuses_and_names_the_gate():
    with pytest.raises(cs.SettingsError, match="CSIPersistentVolume.*Nothing was changed"):
        cs.plan_flags("kubelet", "env_file", "", "KUBELET_EXTRA_ARGS", "/etc/default/kubelet",
                      feature_gates={"CSIPersistentVolume": True}, version="1.25", policy="strict")


def test_obsolete_entries_already_in_the_file_are_removed_and_others_kept():
    text = 'KUBELET_EXTRA_ARGS="--allow-privileged=true --feature-gates=CSIInlineVolume=true,Other=false --v=2"\n'
    new = cs.plan_flags("kubelet", "env_file", text, "KUBELET_EXTRA_ARGS", "/etc/default/kubelet", version="1.33")
    assert new["flags"] == {"feature-gates": "Other=false", "v": "2"}
    assert set(new["dropped"]) == {"allow-privileged", "CSIInlineVolume"}


def test_feature_gates_through_flags_is_refused():
    with pytest.raises(cs.SettingsError, match="feature_gates parameter"):
        cs.plan_flags("kubelet", "env_file", "", "KUBELET_EXTRA_ARGS", "/p", flags={"--feature-gates": "A=true"})


def test_controller_manager_flex_dir_moves_the_flexvolume_dir_volume():
    new = cs.plan_flags("kube-controller-manager", "static_pod", KCM, "kube-controller-manager", "/m.yaml",
                        flags={"flex-volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}, version="1.25")
    assert new["flags"]["flex-volume-plugin-dir"] == "/var/lib/kubelet/volumeplugins"
    assert "      path: /var/lib/kubelet/volumeplugins\n" in new["text"]
    assert "    - mountPath: /var/lib/kubelet/volumeplugins\n      name: flexvolume-dir\n" in new["text"]
    assert "/usr/libexec/kubernetes/kubelet-plugins/volume/exec" not in new["text"]
    again = cs.plan_flags("kube-controller-manager", "static_pod", new["text"], "kube-controller-manager", "/m.yaml",
                          flags={"flex-volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}, version="1.25")
    assert again["text"] == new["text"]


def test_runtime_config_is_merged_entry_by_entry():
    text = "KUBE_API_ARGS=--runtime-config=a/v1=true\n"
    new = cs.plan_flags("kube-apiserver", "env_file", text, "KUBE_API_ARGS", "/p",
                        runtime_config={"storage.k8s.io/v1alpha1": True}, version="1.9")
    assert new["flags"]["runtime-config"] == "a/v1=true,storage.k8s.io/v1alpha1=true"


def test_image_version_reads_the_component_image_tag():
    assert cs.image_version(KCM, "kube-controller-manager") == "1.25.3"
    assert cs.image_version(KCM, "kube-apiserver") is None


def test_kubelet_config_volume_plugin_dir_needs_1_19():
    with pytest.raises(cs.SettingsError, match="ignores the KubeletConfiguration field volumePluginDir"):
        cs.plan_kubelet_config(KUBELET_CONFIG, "/c", settings={"volumePluginDir": "/x"}, version="1.18")
    new = cs.plan_kubelet_config(KUBELET_CONFIG, "/c", settings={"volumePluginDir": "/x"},
                                 feature_gates={"CSIMigration": True}, version="1.33")
    assert new["config"]["volumePluginDir"] == "/x" and "CSIMigration" in new["dropped"]
    assert cs.plan_kubelet_config(new["text"], "/c", settings={"volumePluginDir": "/x"}, version="1.33")["text"] == new["text"]


def _touch(root, rel, text=""):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path


@pytest.mark.parametrize("files, layout", [
    (["usr/lib/systemd/system/kubelet.service", "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
      "var/lib/kubelet/config.yaml", "etc/default/.keep"], "kubeadm"),
    (["etc/kubernetes/kubelet.env", "etc/kubernetes/kubelet-config.yaml"], "kubespray"),
    (["etc/rancher/k3s/config.yaml"], "k3s"),
    (["etc/rancher/rke2/config.yaml"], "rke2"),
    (["etc/systemd/system/kubelet.service"], "plain"),
    ([], "none"),
])
def test_detect_layout(tmp_path, files, layout):
    for rel in files:
        _touch(str(tmp_path), rel)
    assert kn.detect_layout(str(tmp_path))["layout"] == layout


def test_unit_setting_follows_dropin_order(tmp_path):
    root = str(tmp_path)
    _touch(root, "usr/lib/systemd/system/docker.service", "[Service]\nMountFlags=slave\n")
    assert kn.unit_setting(root, "docker", "MountFlags") == "slave"
    _touch(root, "etc/systemd/system/docker.service.d/20-kubestorage-mountflags.conf", "[Service]\nMountFlags=shared\n")
    assert kn.runtimes(root)[0]["mount_flags"] == "shared"


def test_mount_propagation(tmp_path):
    info = _touch(str(tmp_path), "mountinfo",
                  "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
                  "30 22 0:30 / /var/lib/kubelet rw master:7 - tmpfs tmpfs rw\n"
                  "31 22 0:31 / /srv rw - tmpfs tmpfs rw\n")
    assert kn.mount_propagation("/", info) == "shared"
    assert kn.mount_propagation("/var/lib/kubelet/pods", info) == "slave"
    assert kn.mount_propagation("/srv", info) == "private"


def test_restart_pending_lists_files_newer_than_the_process(tmp_path):
    root = str(tmp_path)
    path = _touch(root, "etc/default/kubelet")
    os.utime(path, (1000, 1000))
    assert kn.restart_pending(900, ["/etc/default/kubelet"], root) == ["/etc/default/kubelet"]
    assert kn.restart_pending(999, ["/etc/default/kubelet"], root) == []  # within the btime slack
    assert kn.process_start_time(os.getpid()) > 0
