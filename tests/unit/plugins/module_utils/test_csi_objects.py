# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/csi_objects.py against the reference notes, section 5
(CSI on Kubernetes: sidecar images and flags, RBAC per sidecar, the csi-driver-host-path
layout, immutable fields).

Expected objects, RBAC rules and images are literals written from the reference notes and the
csi-driver-host-path manifests, independently of the module's tables. Every generated object
is validated against the real OpenAPI schemas (kubernetes_validate, strict) of every
Kubernetes version the package ships.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/unit/plugins/module_utils/test_csi_objects.py
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_objects as co
from ansible_collections.kubestorage.enablement.plugins.module_utils import k8s_apply

CsiParamError = co.CsiParamError

DRIVER = "hostpath.csi.k8s.io"
DRIVER_IMAGE = "registry.k8s.io/sig-storage/hostpathplugin:v1.17.1"
BASE = "csi-hostpath-csi-k8s-io"
MANAGED = "app.kubernetes.io/managed-by"
DRIVER_LABEL = "kubestorage.enablement/csi-driver"
LABELS = {MANAGED: "kubestorage.enablement", DRIVER_LABEL: DRIVER}
REG = "registry.k8s.io/sig-storage"

# ---------------------------------------------------------------------------------------
# Reference data (reference notes, section 5), written independently of the module

LEASES = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "watch", "list", "delete", "update", "create"]}
EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch", "create", "update", "patch"]}

EXPECTED_RBAC = {
    "provisioner": {
        "cluster": [
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
            EVENTS,
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"], "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotcontents"], "verbs": ["get", "list"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["csinodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["volumeattachments"], "verbs": ["get", "list", "watch"]},
        ],
        "namespaced": [
            LEASES,
            {"apiGroups": ["storage.k8s.io"], "resources": ["csistoragecapacities"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        ],
    },
    "attacher": {
        "cluster": [
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["csinodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["volumeattachments"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["volumeattachments/status"], "verbs": ["patch"]},
        ],
        "namespaced": [LEASES],
    },
    "resizer": {
        "cluster": [
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims/status"], "verbs": ["patch"]},
            EVENTS,
            {"apiGroups": ["storage.k8s.io"], "resources": ["volumeattributesclasses"], "verbs": ["get", "list", "watch"]},
        ],
        "namespaced": [LEASES],
    },
    "snapshotter": {
        "cluster": [
            EVENTS,
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotclasses"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotcontents"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotcontents/status"], "verbs": ["update", "patch"]},
        ],
        "namespaced": [LEASES],
    },
}

# csi-driver-host-path deploy/kubernetes-X.Y/hostpath/csi-hostpath-plugin.yaml tags:
# provisioner, attacher, resizer, snapshotter, node-driver-registrar, livenessprobe
TAGS_1_24 = ("v3.3.0", "v4.0.0", "v1.6.0", "v6.1.0", "v2.6.0", "v2.8.0")
TAGS_1_27 = ("v4.0.0", "v4.5.0", "v1.10.0", "v7.0.0", "v2.10.0", "v2.12.0")
TAGS_1_30 = ("v5.3.0", "v4.8.1", "v1.13.2", "v8.2.1", "v2.14.0", "v2.15.0")
TAGS_1_34 = ("v6.3.0", "v4.12.0", "v2.2.1", "v8.6.0", "v2.17.0", "v2.19.0")  # reference notes: k8s 1.34/1.35
IMAGE_NAMES = ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "csi-node-driver-registrar", "livenessprobe")
SIDECAR_KEYS = ("provisioner", "attacher", "resizer", "snapshotter", "node_driver_registrar", "livenessprobe")


def images(tags, registry=REG):
    return {key: "%s/%s:%s" % (registry, name, tag) for key, name, tag in zip(SIDECAR_KEYS, IMAGE_NAMES, tags)}


VERSION_TAGS = [
    ("1.24", TAGS_1_24), ("v1.26.15", TAGS_1_24), ("1.27", TAGS_1_27), ("1.29.4", TAGS_1_27), ("1.30", TAGS_1_30),
    ("v1.33.2+k3s1", TAGS_1_30), ("1.34", TAGS_1_34), ("1.35.0", TAGS_1_34), ("1.37", TAGS_1_34),
]

# ---------------------------------------------------------------------------------------
# Parameter sets

HOSTPATH = {"name": DRIVER, "driver_image": DRIVER_IMAGE}
NO_ATTACH = dict(HOSTPATH, attach_required=False)
REPLICAS_2 = dict(HOSTPATH, controller_replicas=2)
SNAPSHOTTER = dict(HOSTPATH, sidecars={"snapshotter": {"enabled": True}})
KUBELET_DIR = dict(HOSTPATH, kubelet_dir="/data/kubelet/")
MIRROR = dict(HOSTPATH, image_registry="mirror.example.com:5000/sig-storage/")
STORAGE_CLASSES = dict(HOSTPATH, storage_classes=[
    {"name": "csi-hostpath-fast", "default": True, "parameters": {"csi.storage.k8s.io/fstype": "xfs", "replicas": 3, "thin": True},
     "allow_volume_expansion": True, "volume_binding_mode": "WaitForFirstConsumer"},
    {"name": "csi-hostpath-retain", "reclaim_policy": "Retain", "mount_options": ["noatime"], "labels": {"tier": "archive"},
     "annotations": {"example.com/owner": "storage-team"},
     "allowed_topologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a", "b"]}]}]},
])
EVERYTHING = {
    "name": "block.storage.example.com", "namespace": "storage-system", "driver_image": "quay.io/example/block-csi:v2.0.0",
    "driver_args": ["--endpoint=$(CSI_ENDPOINT)", "--node-id=$(KUBE_NODE_NAME)", "--v=4"], "attach_required": True,
    "pod_info_on_mount": True, "fs_group_policy": "File", "volume_lifecycle_modes": ["Persistent", "Ephemeral"], "storage_capacity": True,
    "controller_replicas": 3, "kubelet_dir": "/var/lib/k0s/kubelet", "image_registry": "mirror.example.com/k8s",
    "sidecars": {"snapshotter": {"enabled": True, "image": "quay.io/example/csi-snapshotter:v8.6.0-patched", "args": ["--timeout=300s"]},
                 "provisioner": {"args": ["--feature-gates=Topology=true", "--timeout=120s"]}},
    "storage_classes": [{"name": "block", "default": True, "parameters": {"type": "ssd"}}],
    "kubernetes_version": "v1.35.1",
}
PARAM_SETS = {
    "hostpath": HOSTPATH, "no_attach": NO_ATTACH, "replicas_2": REPLICAS_2, "snapshotter": SNAPSHOTTER, "kubelet_dir": KUBELET_DIR,
    "mirror": MIRROR, "storage_classes": STORAGE_CLASSES, "everything": EVERYTHING,
}


def build(params, version="1.35"):
    return co.build_objects(copy.deepcopy(params), version)


def find(objects, kind, name=None):
    found = [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [obj["metadata"]["name"] for obj in found])
    return found[0]


def container(obj, name):
    found = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def fieldref(name, path):
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


SOCKET = {"name": "socket-dir", "mountPath": "/csi"}
DRIVER_ENV = [{"name": "CSI_ENDPOINT", "value": "unix:///csi/csi.sock"}, fieldref("KUBE_NODE_NAME", "spec.nodeName")]
PROBE = {"httpGet": {"path": "/healthz", "port": "healthz"}, "initialDelaySeconds": 10, "timeoutSeconds": 3, "periodSeconds": 2,
         "failureThreshold": 5}
PORTS = [{"name": "healthz", "containerPort": 9808, "protocol": "TCP"}]

# ---------------------------------------------------------------------------------------
# Constants and images


def test_constants():
    assert co.FIELD_MANAGER == "kubestorage.enablement"
    assert co.LABEL_MANAGED_BY == MANAGED
    assert co.LABEL_DRIVER == DRIVER_LABEL
    assert co.SIDECARS == SIDECAR_KEYS
    assert co.DEFAULT_REGISTRY == REG
    assert co.MIN_VERSION == (1, 24)


@pytest.mark.parametrize("version,tags", VERSION_TAGS)
def test_images_for_version(version, tags):
    assert co.images_for(version) == images(tags)


def test_image_sets_cover_every_version_without_gaps():
    rows = co.IMAGE_SETS
    assert rows[0]["min_version"] == co.MIN_VERSION
    assert rows[-1]["max_version"] is None
    for before, after in zip(rows, rows[1:]):
        assert after["min_version"] == (before["max_version"][0], before["max_version"][1] + 1)
    for row in rows:
        assert row["source"].startswith("deploy/kubernetes-")
        assert list(row["images"]) == list(SIDECAR_KEYS)


def test_images_for_registry_and_overrides():
    mirrored = co.images_for("1.34", "mirror.example.com:5000/sig-storage/", {"attacher": "quay.io/x/attacher:v1"})
    expected = images(TAGS_1_34, "mirror.example.com:5000/sig-storage")
    expected["attacher"] = "quay.io/x/attacher:v1"
    assert mirrored == expected
    assert co.images_for("1.34", "mirror.example.com") == images(TAGS_1_34, "mirror.example.com")


@pytest.mark.parametrize("registry", ["https://mirror.example.com", "mirror.example.com/sig storage", "mirror.example.com/x:v1", "", 5])
def test_images_for_bad_registry(registry):
    with pytest.raises(CsiParamError) as err:
        co.images_for("1.34", registry)
    assert err.value.param == "image_registry"


def test_images_for_bad_override():
    with pytest.raises(CsiParamError) as err:
        co.images_for("1.34", overrides={"healthmonitor": "x/y:v1"})
    assert err.value.param == "overrides.healthmonitor"


@pytest.mark.parametrize("text,expected", [
    ("1.33", (1, 33)), ("1.33.2", (1, 33)), ("v1.33.2", (1, 33)), ("v1.33.2+k3s1", (1, 33)), ("v1.30.4-gke.1348000", (1, 30)),
    ("1.9", (1, 9)),
])
def test_parse_version(text, expected):
    assert co.parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "1", "one.two", "1.x", 1.33, None, True])
def test_parse_version_bad(text):
    with pytest.raises(CsiParamError) as err:
        co.parse_version(text)
    assert err.value.param == "kubernetes_version"
    assert str(err.value).startswith("kubernetes_version: ")


# ---------------------------------------------------------------------------------------
# Whole object set


def test_hostpath_object_set_in_apply_order():
    objects = build(HOSTPATH)
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in objects] == [
        ("ServiceAccount", BASE + "-controller"),
        ("ServiceAccount", BASE + "-node"),
        ("ClusterRole", BASE + "-provisioner-runner"),
        ("ClusterRole", BASE + "-attacher-runner"),
        ("ClusterRole", BASE + "-resizer-runner"),
        ("ClusterRoleBinding", BASE + "-provisioner-runner"),
        ("ClusterRoleBinding", BASE + "-attacher-runner"),
        ("ClusterRoleBinding", BASE + "-resizer-runner"),
        ("Role", BASE + "-provisioner-cfg"),
        ("Role", BASE + "-attacher-cfg"),
        ("Role", BASE + "-resizer-cfg"),
        ("RoleBinding", BASE + "-provisioner-cfg"),
        ("RoleBinding", BASE + "-attacher-cfg"),
        ("RoleBinding", BASE + "-resizer-cfg"),
        ("CSIDriver", DRIVER),
        ("Deployment", BASE + "-controller"),
        ("DaemonSet", BASE + "-node"),
    ]
    for obj in objects:
        assert obj["metadata"]["labels"] == LABELS
        namespaced = obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "Deployment", "DaemonSet")
        assert obj["metadata"].get("namespace") == ("kube-system" if namespaced else None)
    assert not any(obj["kind"] == "Namespace" for obj in objects)


def test_service_accounts():
    objects = build(HOSTPATH)
    assert objects[0] == {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": BASE + "-controller", "namespace": "kube-system", "labels": LABELS}}
    assert objects[1] == {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": BASE + "-node", "namespace": "kube-system", "labels": LABELS}}


def test_every_object_carries_both_labels():
    for params in PARAM_SETS.values():
        driver = params["name"]
        for obj in build(params):
            labels = obj["metadata"]["labels"]
            assert labels[MANAGED] == "kubestorage.enablement"
            assert labels[DRIVER_LABEL] == driver


# ---------------------------------------------------------------------------------------
# CSIDriver


def test_csidriver_hostpath():
    assert find(build(HOSTPATH), "CSIDriver") == {
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER, "labels": LABELS},
        "spec": {"attachRequired": True, "podInfoOnMount": False, "fsGroupPolicy": "ReadWriteOnceWithFSType",
                 "volumeLifecycleModes": ["Persistent"], "storageCapacity": False},
    }


def test_csidriver_no_attach():
    assert find(build(NO_ATTACH), "CSIDriver") == {
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER, "labels": LABELS},
        "spec": {"attachRequired": False, "podInfoOnMount": False, "fsGroupPolicy": "ReadWriteOnceWithFSType",
                 "volumeLifecycleModes": ["Persistent"], "storageCapacity": False},
    }


def test_csidriver_everything():
    driver = "block.storage.example.com"
    assert find(build(EVERYTHING), "CSIDriver") == {
        "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
        "metadata": {"name": driver, "labels": {MANAGED: "kubestorage.enablement", DRIVER_LABEL: driver}},
        "spec": {"attachRequired": True, "podInfoOnMount": True, "fsGroupPolicy": "File",
                 "volumeLifecycleModes": ["Persistent", "Ephemeral"], "storageCapacity": True},
    }


@pytest.mark.parametrize("policy", ["File", "ReadWriteOnceWithFSType", "None"])
def test_csidriver_fs_group_policies(policy):
    assert find(build(dict(HOSTPATH, fs_group_policy=policy)), "CSIDriver")["spec"]["fsGroupPolicy"] == policy


# ---------------------------------------------------------------------------------------
# RBAC


def test_rbac_table_equals_reference():
    assert co.RBAC_RULES == EXPECTED_RBAC


@pytest.mark.parametrize("sidecar", ["provisioner", "attacher", "resizer", "snapshotter"])
def test_cluster_role_and_binding_per_sidecar(sidecar):
    objects = build(SNAPSHOTTER)
    name = "%s-%s-runner" % (BASE, sidecar)
    assert find(objects, "ClusterRole", name) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": LABELS},
        "rules": EXPECTED_RBAC[sidecar]["cluster"],
    }
    assert find(objects, "ClusterRoleBinding", name) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name, "labels": LABELS},
        "subjects": [{"kind": "ServiceAccount", "name": BASE + "-controller", "namespace": "kube-system"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
    }


@pytest.mark.parametrize("sidecar", ["provisioner", "attacher", "resizer", "snapshotter"])
def test_role_and_binding_per_sidecar(sidecar):
    objects = build(SNAPSHOTTER)
    name = "%s-%s-cfg" % (BASE, sidecar)
    assert find(objects, "Role", name) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": "kube-system", "labels": LABELS}, "rules": EXPECTED_RBAC[sidecar]["namespaced"],
    }
    assert find(objects, "RoleBinding", name) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "kube-system", "labels": LABELS},
        "subjects": [{"kind": "ServiceAccount", "name": BASE + "-controller", "namespace": "kube-system"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
    }


def test_rbac_only_for_enabled_api_sidecars():
    def rbac_names(objects):
        return sorted(obj["metadata"]["name"] for obj in objects if obj["kind"] == "ClusterRole")
    assert rbac_names(build(HOSTPATH)) == sorted(BASE + "-%s-runner" % s for s in ("provisioner", "attacher", "resizer"))
    assert rbac_names(build(NO_ATTACH)) == sorted(BASE + "-%s-runner" % s for s in ("provisioner", "resizer"))
    assert rbac_names(build(SNAPSHOTTER)) == sorted(BASE + "-%s-runner" % s for s in ("provisioner", "attacher", "resizer", "snapshotter"))
    names = " ".join(obj["metadata"]["name"] for obj in build(SNAPSHOTTER))
    assert "registrar" not in names and "livenessprobe" not in names


def test_rbac_in_custom_namespace():
    objects = build(EVERYTHING)
    base = "csi-block-storage-example-com"
    for obj in objects:
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert obj["subjects"] == [{"kind": "ServiceAccount", "name": base + "-controller", "namespace": "storage-system"}]
        if obj["kind"] in ("Role", "RoleBinding", "ServiceAccount", "Deployment", "DaemonSet"):
            assert obj["metadata"]["namespace"] == "storage-system"


def test_node_only_driver_has_no_controller():
    params = dict(NO_ATTACH, volume_lifecycle_modes=["Ephemeral"], pod_info_on_mount=True,
                  sidecars={"provisioner": {"enabled": False}, "resizer": {"enabled": False}})
    objects = build(params)
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in objects] == [
        ("ServiceAccount", BASE + "-node"), ("CSIDriver", DRIVER), ("DaemonSet", BASE + "-node")]


# ---------------------------------------------------------------------------------------
# Controller Deployment


def expected_controller_containers(tags, sidecars=("provisioner", "attacher", "resizer"), extra=(), registry=REG):
    imgs = images(tags, registry)
    containers = []
    for sidecar in sidecars:
        containers.append({"name": "csi-" + sidecar, "image": imgs[sidecar], "args": ["--csi-address=/csi/csi.sock"] + list(extra),
                           "volumeMounts": [SOCKET]})
    containers.append({"name": "liveness-probe", "image": imgs["livenessprobe"], "args": ["--csi-address=/csi/csi.sock", "--health-port=9808"],
                       "volumeMounts": [SOCKET]})
    containers.append({"name": "csi-driver", "image": DRIVER_IMAGE, "args": ["--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"],
                       "env": DRIVER_ENV, "ports": PORTS, "livenessProbe": PROBE, "volumeMounts": [SOCKET]})
    return containers


def test_deployment_hostpath_whole():
    selector = {"app.kubernetes.io/name": BASE, "app.kubernetes.io/component": "controller", DRIVER_LABEL: DRIVER}
    assert find(build(HOSTPATH), "Deployment") == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": BASE + "-controller", "namespace": "kube-system", "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(selector, **{MANAGED: "kubestorage.enablement"})},
                "spec": {"serviceAccountName": BASE + "-controller", "containers": expected_controller_containers(TAGS_1_34),
                         "volumes": [{"name": "socket-dir", "emptyDir": {}}]},
            },
        },
    }


def test_deployment_images_follow_version():
    objects = build(HOSTPATH, "1.28")
    assert find(objects, "Deployment")["spec"]["template"]["spec"]["containers"] == expected_controller_containers(TAGS_1_27)


def test_deployment_no_attach():
    containers = find(build(NO_ATTACH), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert containers == expected_controller_containers(TAGS_1_34, sidecars=("provisioner", "resizer"))


def test_deployment_replicas_2_leader_election():
    deployment = find(build(REPLICAS_2), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    election = ("--leader-election", "--leader-election-namespace=kube-system")
    assert deployment["spec"]["template"]["spec"]["containers"] == expected_controller_containers(TAGS_1_34, extra=election)


def test_deployment_snapshotter():
    containers = find(build(SNAPSHOTTER), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert containers == expected_controller_containers(TAGS_1_34, sidecars=("provisioner", "attacher", "resizer", "snapshotter"))


def test_deployment_mirror():
    containers = find(build(MIRROR), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert containers == expected_controller_containers(TAGS_1_34, registry="mirror.example.com:5000/sig-storage")
    node = find(build(MIRROR), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in node] == ["mirror.example.com:5000/sig-storage/csi-node-driver-registrar:v2.17.0",
                                          "mirror.example.com:5000/sig-storage/livenessprobe:v2.19.0", DRIVER_IMAGE]


def test_deployment_everything():
    deployment = find(build(EVERYTHING), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    containers = deployment["spec"]["template"]["spec"]["containers"]
    mirror = "mirror.example.com/k8s"
    election = ["--leader-election", "--leader-election-namespace=storage-system"]
    assert containers[:4] == [
        {"name": "csi-provisioner", "image": mirror + "/csi-provisioner:v6.3.0",
         "args": ["--csi-address=/csi/csi.sock"] + election + ["--enable-capacity", "--capacity-ownerref-level=2",
                                                               "--feature-gates=Topology=true", "--timeout=120s"],
         "env": [fieldref("NAMESPACE", "metadata.namespace"), fieldref("POD_NAME", "metadata.name")], "volumeMounts": [SOCKET]},
        {"name": "csi-attacher", "image": mirror + "/csi-attacher:v4.12.0", "args": ["--csi-address=/csi/csi.sock"] + election,
         "volumeMounts": [SOCKET]},
        {"name": "csi-resizer", "image": mirror + "/csi-resizer:v2.2.1", "args": ["--csi-address=/csi/csi.sock"] + election,
         "volumeMounts": [SOCKET]},
        {"name": "csi-snapshotter", "image": "quay.io/example/csi-snapshotter:v8.6.0-patched",
         "args": ["--csi-address=/csi/csi.sock"] + election + ["--timeout=300s"], "volumeMounts": [SOCKET]},
    ]
    assert containers[4]["args"] == ["--csi-address=/csi/csi.sock", "--health-port=9808"]
    assert containers[5]["args"] == ["--endpoint=$(CSI_ENDPOINT)", "--node-id=$(KUBE_NODE_NAME)", "--v=4"]
    assert containers[5]["image"] == "quay.io/example/block-csi:v2.0.0"


def test_livenessprobe_disabled():
    objects = build(dict(HOSTPATH, sidecars={"livenessprobe": {"enabled": False}}))
    for kind in ("Deployment", "DaemonSet"):
        containers = find(objects, kind)["spec"]["template"]["spec"]["containers"]
        assert "liveness-probe" not in [c["name"] for c in containers]
        assert "livenessProbe" not in containers[-1] and "ports" not in containers[-1]


# ---------------------------------------------------------------------------------------
# Node DaemonSet


def expected_node(kubelet_dir, driver=DRIVER):
    plugin_dir = "%s/plugins/%s" % (kubelet_dir, driver)
    registrar_args = ["--csi-address=/csi/csi.sock", "--kubelet-registration-path=%s/csi.sock" % plugin_dir]
    mounts = [SOCKET,
              {"name": "mountpoint-dir", "mountPath": kubelet_dir + "/pods", "mountPropagation": "Bidirectional"},
              {"name": "plugins-dir", "mountPath": kubelet_dir + "/plugins", "mountPropagation": "Bidirectional"},
              {"name": "dev-dir", "mountPath": "/dev"}]
    volumes = [
        {"name": "socket-dir", "hostPath": {"path": plugin_dir, "type": "DirectoryOrCreate"}},
        {"name": "registration-dir", "hostPath": {"path": kubelet_dir + "/plugins_registry", "type": "Directory"}},
        {"name": "mountpoint-dir", "hostPath": {"path": kubelet_dir + "/pods", "type": "Directory"}},
        {"name": "plugins-dir", "hostPath": {"path": kubelet_dir + "/plugins", "type": "Directory"}},
        {"name": "dev-dir", "hostPath": {"path": "/dev", "type": "Directory"}},
    ]
    return registrar_args, mounts, volumes


@pytest.mark.parametrize("params,kubelet_dir", [(HOSTPATH, "/var/lib/kubelet"), (KUBELET_DIR, "/data/kubelet")])
def test_daemonset_volumes_mounts_registrar(params, kubelet_dir):
    daemonset = find(build(params), "DaemonSet")
    registrar_args, mounts, volumes = expected_node(kubelet_dir)
    spec = daemonset["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["node-driver-registrar", "liveness-probe", "csi-driver"]
    assert spec["volumes"] == volumes
    registrar = container(daemonset, "node-driver-registrar")
    assert registrar == {
        "name": "node-driver-registrar", "image": REG + "/csi-node-driver-registrar:v2.17.0", "args": registrar_args,
        "env": [fieldref("KUBE_NODE_NAME", "spec.nodeName")], "securityContext": {"privileged": True},
        "volumeMounts": [SOCKET, {"name": "registration-dir", "mountPath": "/registration"}],
    }
    assert container(daemonset, "liveness-probe") == {
        "name": "liveness-probe", "image": REG + "/livenessprobe:v2.19.0", "args": ["--csi-address=/csi/csi.sock", "--health-port=9808"],
        "volumeMounts": [SOCKET]}
    assert container(daemonset, "csi-driver") == {
        "name": "csi-driver", "image": DRIVER_IMAGE, "args": ["--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"],
        "env": DRIVER_ENV, "securityContext": {"privileged": True}, "ports": PORTS, "livenessProbe": PROBE, "volumeMounts": mounts}


def test_daemonset_metadata_and_selector():
    daemonset = find(build(HOSTPATH), "DaemonSet")
    selector = {"app.kubernetes.io/name": BASE, "app.kubernetes.io/component": "node", DRIVER_LABEL: DRIVER}
    assert daemonset["metadata"] == {"name": BASE + "-node", "namespace": "kube-system", "labels": LABELS}
    assert daemonset["spec"]["selector"] == {"matchLabels": selector}
    assert daemonset["spec"]["template"]["metadata"] == {"labels": dict(selector, **{MANAGED: "kubestorage.enablement"})}
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == BASE + "-node"


def test_selectors_do_not_depend_on_other_parameters():
    def selectors(params):
        return [obj["spec"]["selector"] for obj in build(params) if obj["kind"] in ("Deployment", "DaemonSet")]
    reference = selectors(HOSTPATH)
    for params in (REPLICAS_2, SNAPSHOTTER, KUBELET_DIR, MIRROR, STORAGE_CLASSES):
        assert selectors(params) == reference


# ---------------------------------------------------------------------------------------
# StorageClasses


def test_storage_classes_in_object_set():
    objects = build(STORAGE_CLASSES)
    assert [obj["kind"] for obj in objects[-3:]] == ["DaemonSet", "StorageClass", "StorageClass"]
    assert objects[-2] == {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "csi-hostpath-fast", "labels": LABELS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": DRIVER,
        "parameters": {"csi.storage.k8s.io/fstype": "xfs", "replicas": "3", "thin": "true"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True,
    }
    assert objects[-1] == {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "csi-hostpath-retain", "labels": dict(LABELS, tier="archive"), "annotations": {"example.com/owner": "storage-team"}},
        "provisioner": DRIVER, "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate", "mountOptions": ["noatime"],
        "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a", "b"]}]}],
    }


def test_build_storage_class_standalone():
    sc = co.build_storage_class({"name": "nfs", "provisioner": "nfs.csi.k8s.io", "parameters": {"server": "10.0.0.5", "share": "/export"},
                                 "default": False})
    assert sc == {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "nfs", "labels": {MANAGED: "kubestorage.enablement", DRIVER_LABEL: "nfs.csi.k8s.io"}},
        "provisioner": "nfs.csi.k8s.io", "parameters": {"server": "10.0.0.5", "share": "/export"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    }
    assert co.build_storage_class({"name": "x"}, default_provisioner=DRIVER)["provisioner"] == DRIVER


def test_normalize_storage_class_defaults():
    assert co.normalize_storage_class({"name": "x", "provisioner": DRIVER}) == {
        "name": "x", "provisioner": DRIVER, "parameters": {}, "reclaim_policy": "Delete", "volume_binding_mode": "Immediate",
        "allow_volume_expansion": None, "mount_options": [], "allowed_topologies": [], "default": False, "labels": {}, "annotations": {},
    }


def test_storage_class_parameters_sorted_and_coerced():
    sc = co.build_storage_class({"name": "x", "provisioner": DRIVER, "parameters": {"b": False, "a": 1.5, "c": "x"}})
    assert list(sc["parameters"].items()) == [("a", "1.5"), ("b", "false"), ("c", "x")]


# ---------------------------------------------------------------------------------------
# Real schemas


def shipped_versions():
    from kubernetes_validate.utils import all_versions
    versions = []
    for version in all_versions():
        minor = ".".join(version.split(".")[:2])
        if minor not in versions and co.parse_version(minor) >= co.MIN_VERSION:
            versions.append(minor)
    return versions


SCHEMA_VERSIONS = shipped_versions()


def test_schema_versions_cover_shipped_range():
    assert SCHEMA_VERSIONS[0] == "1.25" and len(SCHEMA_VERSIONS) >= 13


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("name", ["hostpath", "no_attach", "replicas_2", "snapshotter", "kubelet_dir", "mirror", "storage_classes", "everything"])
def test_objects_validate_against_openapi(name, version):
    import kubernetes_validate
    objects = build(PARAM_SETS[name], version)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_schema_validation_is_strict():
    import kubernetes_validate
    daemonset = copy.deepcopy(find(build(HOSTPATH), "DaemonSet"))
    daemonset["spec"]["template"]["spec"]["containers"][0]["mountPropagation"] = "Bidirectional"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, "1.35", strict=True)


# ---------------------------------------------------------------------------------------
# Bad inputs


BAD_INPUTS = [
    (dict(HOSTPATH, name="Hostpath.CSI.k8s.io"), "name"),
    (dict(HOSTPATH, name="example.com/hostpath"), "name"),
    (dict(HOSTPATH, name="hostpath..csi.k8s.io"), "name"),
    (dict(HOSTPATH, name="../../etc"), "name"),
    (dict(HOSTPATH, name="a" * 64), "name"),
    ({"driver_image": DRIVER_IMAGE}, "name"),
    (dict(HOSTPATH, namespace="Kube_System"), "namespace"),
    ({"name": DRIVER}, "driver_image"),
    (dict(HOSTPATH, driver_image="https://registry/x:v1"), "driver_image"),
    (dict(HOSTPATH, driver_args="--endpoint=$(CSI_ENDPOINT)"), "driver_args"),
    (dict(HOSTPATH, driver_args=["--v", 5]), "driver_args[1]"),
    (dict(HOSTPATH, attach_required="yes"), "attach_required"),
    (dict(HOSTPATH, fs_group_policy="file"), "fs_group_policy"),
    (dict(HOSTPATH, volume_lifecycle_modes=["Persistent", "Inline"]), "volume_lifecycle_modes[1]"),
    (dict(HOSTPATH, volume_lifecycle_modes=[]), "volume_lifecycle_modes"),
    (dict(HOSTPATH, volume_lifecycle_modes=["Persistent", "Persistent"]), "volume_lifecycle_modes[1]"),
    (dict(HOSTPATH, sidecars={"health_monitor": {"enabled": True}}), "sidecars.health_monitor"),
    (dict(HOSTPATH, sidecars={"attacher": {"image": 42}}), "sidecars.attacher.image"),
    (dict(HOSTPATH, sidecars={"attacher": {"enable": True}}), "sidecars.attacher.enable"),
    (dict(HOSTPATH, sidecars={"resizer": {"args": "--timeout=60s"}}), "sidecars.resizer.args"),
    (dict(HOSTPATH, sidecars={"provisioner": "on"}), "sidecars.provisioner"),
    (dict(NO_ATTACH, sidecars={"attacher": {"enabled": True}}), "sidecars.attacher.enabled"),
    (dict(HOSTPATH, sidecars={"attacher": {"enabled": False}}), "sidecars.attacher.enabled"),
    (dict(HOSTPATH, sidecars={"node_driver_registrar": {"enabled": False}}), "sidecars.node_driver_registrar.enabled"),
    (dict(HOSTPATH, storage_capacity=True, sidecars={"provisioner": {"enabled": False}}), "storage_capacity"),
    (dict(HOSTPATH, controller_replicas=0), "controller_replicas"),
    (dict(HOSTPATH, controller_replicas="2"), "controller_replicas"),
    (dict(HOSTPATH, controller_replicas=True), "controller_replicas"),
    (dict(HOSTPATH, kubelet_dir="var/lib/kubelet"), "kubelet_dir"),
    (dict(HOSTPATH, kubelet_dir="/var/lib/../kubelet"), "kubelet_dir"),
    (dict(HOSTPATH, image_registry="https://mirror.example.com"), "image_registry"),
    (dict(HOSTPATH, storage_classes=[{"provisioner": DRIVER}]), "storage_classes[0].name"),
    (dict(HOSTPATH, storage_classes={"name": "x"}), "storage_classes"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "reclaim_policy": "Recycle"}]), "storage_classes[0].reclaim_policy"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "volume_binding_mode": "Lazy"}]), "storage_classes[0].volume_binding_mode"),
    (dict(HOSTPATH, storage_classes=[{"name": "x"}, {"name": "y", "reclaimPolicy": "Retain"}]), "storage_classes[1].reclaimPolicy"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "parameters": {"a": None}}]), "storage_classes[0].parameters.a"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "parameters": {"a": [1]}}]), "storage_classes[0].parameters.a"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "default": True}, {"name": "y", "default": True}]), "storage_classes[1].default"),
    (dict(HOSTPATH, storage_classes=[{"name": "x"}, {"name": "x"}]), "storage_classes[1].name"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}]),
     "storage_classes[0].annotations.storageclass.kubernetes.io/is-default-class"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "labels": {DRIVER_LABEL: "other"}}]), "storage_classes[0].labels.%s" % DRIVER_LABEL),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "labels": {"tier": "a b"}}]), "storage_classes[0].labels.tier"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "allowed_topologies": {"zone": "a"}}]), "storage_classes[0].allowed_topologies"),
    (dict(HOSTPATH, storage_classes=[{"name": "x", "provisioner": "kubernetes.io/no-provisioner"}]), "storage_classes[0].provisioner"),
    (dict(HOSTPATH, kubernetes_version="latest"), "kubernetes_version"),
    (dict(HOSTPATH, kubernetes_version="1.23.17"), "kubernetes_version"),
    (dict(HOSTPATH, state="started"), "state"),
]


@pytest.mark.parametrize("params,param", BAD_INPUTS, ids=["%02d-%s" % (i, case[1]) for i, case in enumerate(BAD_INPUTS)])
def test_bad_input_names_parameter(params, param):
    with pytest.raises(CsiParamError) as err:
        co.normalize_params(copy.deepcopy(params))
    assert err.value.param == param
    assert str(err.value).startswith(param + ": ")
    assert err.value.msg == str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("version", ["1.23", "v1.20.15", "garbage", None])
def test_build_objects_bad_version(version):
    with pytest.raises(CsiParamError) as err:
        co.build_objects(dict(HOSTPATH), version)
    assert err.value.param == "kubernetes_version"


def test_version_error_explains_minimum():
    with pytest.raises(CsiParamError) as err:
        co.build_objects(dict(HOSTPATH), "1.23")
    assert "1.23 is older than 1.24" in str(err.value)


def test_user_arg_for_builder_flag():
    params = dict(HOSTPATH, sidecars={"provisioner": {"args": ["--timeout=60s", "-csi-address=/other.sock"]}})
    with pytest.raises(CsiParamError) as err:
        build(params)
    assert err.value.param == "sidecars.provisioner.args[1]"
    params = dict(HOSTPATH, sidecars={"node_driver_registrar": {"args": ["--kubelet-registration-path=/x"]}})
    with pytest.raises(CsiParamError) as err:
        build(params)
    assert err.value.param == "sidecars.node_driver_registrar.args[0]"


def test_state_absent_needs_no_image_but_build_does():
    normalized = co.normalize_params({"name": DRIVER, "state": "absent"})
    assert normalized["driver_image"] is None
    with pytest.raises(CsiParamError) as err:
        co.build_objects({"name": DRIVER, "state": "absent"}, "1.33")
    assert err.value.param == "driver_image"


# ---------------------------------------------------------------------------------------
# normalize_params


def test_normalize_defaults():
    assert co.normalize_params(dict(HOSTPATH, extra_module_option="ignored")) == {
        "state": "present", "name": DRIVER, "namespace": "kube-system", "driver_image": DRIVER_IMAGE,
        "driver_args": ["--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"], "attach_required": True, "pod_info_on_mount": False,
        "fs_group_policy": "ReadWriteOnceWithFSType", "volume_lifecycle_modes": ["Persistent"], "storage_capacity": False,
        "sidecars": {
            "provisioner": {"enabled": True, "image": None, "args": []},
            "attacher": {"enabled": True, "image": None, "args": []},
            "resizer": {"enabled": True, "image": None, "args": []},
            "snapshotter": {"enabled": False, "image": None, "args": []},
            "node_driver_registrar": {"enabled": True, "image": None, "args": []},
            "livenessprobe": {"enabled": True, "image": None, "args": []},
        },
        "controller_replicas": 1, "kubelet_dir": "/var/lib/kubelet", "image_registry": None, "storage_classes": [],
        "kubernetes_version": None,
    }


def test_normalize_none_means_default():
    nones = {key: None for key in ("namespace", "driver_args", "attach_required", "pod_info_on_mount", "fs_group_policy",
                                   "volume_lifecycle_modes", "storage_capacity", "sidecars", "controller_replicas", "kubelet_dir",
                                   "image_registry", "storage_classes", "kubernetes_version", "state")}
    assert co.normalize_params(dict(HOSTPATH, **nones)) == co.normalize_params(HOSTPATH)


def test_normalize_attacher_follows_attach_required():
    assert co.normalize_params(NO_ATTACH)["sidecars"]["attacher"]["enabled"] is False


def test_normalize_values():
    normalized = co.normalize_params(dict(KUBELET_DIR, kubernetes_version="v1.33.2+k3s1", image_registry="mirror.example.com/x/"))
    assert normalized["kubelet_dir"] == "/data/kubelet"
    assert normalized["kubernetes_version"] == "1.33"
    assert normalized["image_registry"] == "mirror.example.com/x"


@pytest.mark.parametrize("name", sorted(PARAM_SETS))
def test_normalize_is_idempotent(name):
    once = co.normalize_params(copy.deepcopy(PARAM_SETS[name]))
    assert co.normalize_params(copy.deepcopy(once)) == once


def test_inputs_are_not_modified():
    params = copy.deepcopy(EVERYTHING)
    co.build_objects(params, "1.35")
    assert params == EVERYTHING


# ---------------------------------------------------------------------------------------
# Names


def test_object_names_are_valid_labels():
    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    long_a = "long-storage-vendor-driver-name.block.csi.storage.example.com"
    long_b = "long-storage-vendor-driver-name.block.csi.storage.example.org"
    assert len(long_a) <= 63
    for driver in (DRIVER, long_a, long_b, "a", "x" * 63):
        for obj in build(dict(HOSTPATH, name=driver)):
            name = obj["metadata"]["name"]
            if obj["kind"] not in ("CSIDriver",):
                assert len(name) <= 63 and label.match(name), name
        assert co.base_name(driver) == co.base_name(driver)
    assert co.base_name(DRIVER) == BASE
    assert co.base_name(long_a) != co.base_name(long_b)
    assert len(co.base_name(long_a)) <= 44


# ---------------------------------------------------------------------------------------
# render_files and determinism


@pytest.mark.parametrize("name", ["hostpath", "storage_classes", "everything"])
def test_render_files(name):
    objects = build(PARAM_SETS[name])
    files = co.render_files(objects)
    assert co.render_files(build(PARAM_SETS[name])) == files
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    assert kustomization == {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                             "resources": [f for f in files if f != "kustomization.yaml"]}
    assert len(kustomization["resources"]) == len(objects)
    for index, (file_name, obj) in enumerate(zip(kustomization["resources"], objects), start=1):
        assert file_name == "%02d-%s-%s.yaml" % (index, obj["kind"].lower(), obj["metadata"]["name"])
        assert yaml.safe_load(files[file_name]) == obj
        assert "&id" not in files[file_name] and "*id" not in files[file_name]
        assert files[file_name].startswith("apiVersion: ")


def test_render_files_text():
    files = co.render_files([find(build(HOSTPATH), "CSIDriver")])
    assert files == {
        "01-csidriver-hostpath.csi.k8s.io.yaml": (
            "apiVersion: storage.k8s.io/v1\n"
            "kind: CSIDriver\n"
            "metadata:\n"
            "  name: hostpath.csi.k8s.io\n"
            "  labels:\n"
            "    app.kubernetes.io/managed-by: kubestorage.enablement\n"
            "    kubestorage.enablement/csi-driver: hostpath.csi.k8s.io\n"
            "spec:\n"
            "  attachRequired: true\n"
            "  podInfoOnMount: false\n"
            "  fsGroupPolicy: ReadWriteOnceWithFSType\n"
            "  volumeLifecycleModes:\n"
            "  - Persistent\n"
            "  storageCapacity: false\n"
        ),
        "kustomization.yaml": (
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "resources:\n"
            "- 01-csidriver-hostpath.csi.k8s.io.yaml\n"
        ),
    }


@pytest.mark.parametrize("name", sorted(PARAM_SETS))
def test_build_is_deterministic(name):
    first = build(PARAM_SETS[name])
    second = build(PARAM_SETS[name])
    assert first == second
    assert co.render_files(first) == co.render_files(second)
    shuffled = copy.deepcopy(PARAM_SETS[name])
    for sc in shuffled.get("storage_classes", []):
        for key in ("parameters", "labels", "annotations"):
            if key in sc:
                sc[key] = dict(reversed(list(sc[key].items())))
    assert co.render_files(build(shuffled)) == co.render_files(first)


def test_objects_do_not_share_state():
    first = build(SNAPSHOTTER)
    first[2]["rules"][0]["verbs"].append("escalate")
    find(first, "Deployment")["spec"]["selector"]["matchLabels"]["x"] = "y"
    assert build(SNAPSHOTTER) != first
    assert co.RBAC_RULES == EXPECTED_RBAC


# ---------------------------------------------------------------------------------------
# The built objects against the apply engine's immutable-field rules (k8s_apply)


def live_copy(obj):
    return copy.deepcopy(obj)


def immutable(live, desired, version=None):
    return k8s_apply.immutable_changes(desired["kind"], live, desired, version)


def test_immutable_storage_class_parameters():
    desired = find(build(STORAGE_CLASSES), "StorageClass", "csi-hostpath-fast")
    live = live_copy(desired)
    live["parameters"]["replicas"] = "2"
    assert immutable(live, desired) == ["parameters"]
    live = live_copy(desired)
    live["parameters"]["extra"] = "1"
    assert immutable(live, desired) == ["parameters"]
    live = live_copy(desired)
    live["reclaimPolicy"] = "Retain"
    live["volumeBindingMode"] = "Immediate"
    assert immutable(live, desired) == ["reclaimPolicy", "volumeBindingMode"]
    no_params = find(build(STORAGE_CLASSES), "StorageClass", "csi-hostpath-retain")
    live = live_copy(no_params)
    live["parameters"] = {"a": "b"}
    assert immutable(live, no_params) == ["parameters"]
    live = live_copy(no_params)
    live["allowVolumeExpansion"] = True
    live["metadata"]["annotations"]["other"] = "x"
    assert immutable(live, no_params) == []


def test_immutable_csidriver_attach_required():
    desired = find(build(NO_ATTACH), "CSIDriver")
    live = live_copy(find(build(HOSTPATH), "CSIDriver"))
    assert immutable(live, desired) == ["spec.attachRequired"]
    assert immutable(live, desired, "1.35") == ["spec.attachRequired"]


def test_immutable_csidriver_mutable_since_1_29():
    desired = find(build(dict(HOSTPATH, fs_group_policy="File", pod_info_on_mount=True)), "CSIDriver")
    live = live_copy(find(build(HOSTPATH), "CSIDriver"))
    assert immutable(live, desired) == ["spec.fsGroupPolicy", "spec.podInfoOnMount"]
    assert immutable(live, desired, "1.28") == ["spec.fsGroupPolicy", "spec.podInfoOnMount"]
    assert immutable(live, desired, "1.29") == []
    storage = find(build(dict(HOSTPATH, storage_capacity=True)), "CSIDriver")
    assert immutable(live, storage) == []
    modes = find(build(dict(HOSTPATH, volume_lifecycle_modes=["Persistent", "Ephemeral"])), "CSIDriver")
    assert immutable(live, modes, "1.35") == ["spec.volumeLifecycleModes"]


def test_immutable_selector():
    desired = find(build(HOSTPATH), "Deployment")
    live = live_copy(desired)
    live["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "csi-hostpathplugin"
    assert immutable(live, desired) == ["spec.selector"]
    live = live_copy(desired)
    live["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert immutable(live, desired) == ["spec.selector"]
    live = live_copy(find(build(HOSTPATH), "DaemonSet"))
    del live["spec"]["selector"]
    assert immutable(live, find(build(HOSTPATH), "DaemonSet")) == ["spec.selector"]


def test_no_change_when_live_carries_server_defaults():
    objects = build(STORAGE_CLASSES)
    csidriver = find(objects, "CSIDriver")
    live = live_copy(csidriver)
    live["metadata"].update({"uid": "0d6c", "resourceVersion": "42", "creationTimestamp": "2024-01-01T00:00:00Z"})
    live["spec"].update({"requiresRepublish": False, "seLinuxMount": False})
    assert immutable(live, csidriver) == []
    deployment = find(objects, "Deployment")
    live = live_copy(deployment)
    live["spec"].update({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                         "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600})
    live["status"] = {"replicas": 1}
    assert immutable(live, deployment) == []
    daemonset = find(objects, "DaemonSet")
    live = live_copy(daemonset)
    live["spec"]["updateStrategy"] = {"type": "RollingUpdate"}
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    assert immutable(live, daemonset) == []
    for sc in (obj for obj in objects if obj["kind"] == "StorageClass"):
        assert immutable(live_copy(sc), sc) == []
    service_account = objects[0]
    assert immutable(dict(service_account, secrets=[{"name": "x"}]), service_account) == []
