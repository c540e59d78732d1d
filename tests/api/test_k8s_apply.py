# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of plugins/module_utils/k8s_apply.py with the real kubernetes client over HTTP.

The cluster is tests/api/fake_apiserver.py (one per test, see conftest.py); assertions on
what the engine sent use the server's request log, so "zero writes" means that no
POST/PUT/PATCH/DELETE without dryRun reached the server.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/api
"""

import copy
import json
import socket

import kubernetes.client
import pytest

from ansible_collections.kubestorage.enablement.plugins.module_utils import k8s_apply
from fake_apiserver import ALL_GROUP_VERSIONS

NS = "kube-system"
DRIVER = "hostpath.csi.k8s.io"
SELECTOR = "kubestorage.enablement/driver=%s" % DRIVER
LABELS = {"app.kubernetes.io/managed-by": "kubestorage.enablement", "kubestorage.enablement/driver": DRIVER}
KINDS = list(k8s_apply.DELETE_ORDER)


def meta(name, namespace=None, labels=None):
    data = {"name": name, "labels": dict(LABELS, **(labels or {}))}
    if namespace:
        data["namespace"] = namespace
    return data


def workload(kind, name, image):
    labels = {"app": name}
    spec = {"selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"serviceAccountName": name,
                                  "containers": [{"name": "driver", "image": image, "args": ["--endpoint=unix:///csi/csi.sock"]}]}}}
    if kind == "Deployment":
        spec["replicas"] = 1
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta(name, NS), "spec": spec}


def driver_objects(image="registry.k8s.io/sig-storage/hostpathplugin:v1.17.0", parameters=None, attach_required=False):
    """The 10 objects of a small CSI driver deployment."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("csi-controller", NS)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("csi-node", NS)},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": meta("csi-provisioner"),
         "rules": [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                   {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": meta("csi-provisioner"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csi-provisioner"},
         "subjects": [{"kind": "ServiceAccount", "name": "csi-controller", "namespace": NS}]},
        {"apiVersion": rbac, "kind": "Role", "metadata": meta("csi-leader-election", NS),
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "watch", "list", "delete", "update", "create"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": meta("csi-leader-election", NS),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "csi-leader-election"},
         "subjects": [{"kind": "ServiceAccount", "name": "csi-controller", "namespace": NS}]},
        {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": meta(DRIVER),
         "spec": {"attachRequired": attach_required, "podInfoOnMount": True, "volumeLifecycleModes": ["Persistent"]}},
        workload("Deployment", "csi-controller", image),
        workload("DaemonSet", "csi-node", image),
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta("csi-hostpath"),
         "provisioner": DRIVER, "parameters": parameters or {"fsType": "ext4"}, "reclaimPolicy": "Delete",
         "volumeBindingMode": "WaitForFirstConsumer"},
    ]


def find(objects, kind):
    return [obj for obj in objects if obj["kind"] == kind][0]


def applier(apiserver, **kwargs):
    kwargs.setdefault("retry_delay", 0.01)
    return k8s_apply.Applier(apiserver.api_client(), **kwargs)


def apply_all(engine, objects, **kwargs):
    return [engine.apply(obj, **kwargs) for obj in objects]


@pytest.fixture
def deployed(apiserver):
    """The driver's objects applied once; the server's request log cleared."""
    objects = driver_objects()
    apply_all(applier(apiserver), objects)
    apiserver.clear_log()
    return objects


# ---------------------------------------------------------------------------------------
# apply


def test_first_apply_creates_everything(apiserver):
    engine = applier(apiserver)
    results = apply_all(engine, driver_objects())
    assert [r["action"] for r in results] == ["created"] * 10
    assert [r["ref"] for r in results][:3] == ["ServiceAccount kube-system/csi-controller", "ServiceAccount kube-system/csi-node",
                                               "ClusterRole csi-provisioner"]
    assert engine.requests == {"GET": 10, "PATCH": 10}
    assert apiserver.counts() == {"reads": 10, "writes": 10, "dry_run_writes": 0}
    patches = [entry for entry in apiserver.requests if entry.method == "PATCH"]
    assert all(entry.query == {"fieldManager": "kubestorage.enablement", "force": "true"} for entry in patches)
    driver = apiserver.get("CSIDriver", DRIVER)
    assert driver["spec"]["attachRequired"] is False
    assert driver["metadata"]["annotations"][k8s_apply.HASH_ANNOTATION] == k8s_apply.applied_hash(find(driver_objects(), "CSIDriver"))
    assert [entry["manager"] for entry in driver["metadata"]["managedFields"]] == ["kubestorage.enablement"]
    assert results[-1]["before"] is None and results[-1]["after"]["metadata"]["uid"]


def test_second_apply_reads_only_and_reports_unchanged(apiserver, deployed):
    engine = applier(apiserver)
    results = apply_all(engine, driver_objects())
    assert [r["action"] for r in results] == ["unchanged"] * 10
    assert apiserver.counts() == {"reads": 10, "writes": 0, "dry_run_writes": 0}
    assert engine.requests == {"GET": 10} and engine.request_count == 10 and engine.writes == 0
    assert results[0]["before"] == results[0]["after"]


def test_check_mode_on_empty_cluster_predicts_created_and_stores_nothing(apiserver):
    engine = applier(apiserver, check_mode=True)
    results = apply_all(engine, driver_objects())
    assert [r["action"] for r in results] == ["created"] * 10
    assert apiserver.counts() == {"reads": 10, "writes": 0, "dry_run_writes": 10}
    assert all(entry.query.get("dryRun") == "All" for entry in apiserver.requests if entry.method == "PATCH")
    assert apiserver.get("StorageClass", "csi-hostpath") is None
    assert results[-1]["after"]["provisioner"] == DRIVER


def test_check_mode_predicts_updated_and_unchanged(apiserver, deployed):
    engine = applier(apiserver, check_mode=True)
    results = apply_all(engine, driver_objects(image="registry.k8s.io/sig-storage/hostpathplugin:v1.18.0"))
    actions = {r["ref"]: r["action"] for r in results}
    assert actions.pop("Deployment kube-system/csi-controller") == "updated"
    assert actions.pop("DaemonSet kube-system/csi-node") == "updated"
    assert set(actions.values()) == {"unchanged"}
    assert apiserver.counts() == {"reads": 10, "writes": 0, "dry_run_writes": 2}
    live = apiserver.get("Deployment", "csi-controller", NS)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.17.0")
    predicted = [r for r in results if r["ref"] == "Deployment kube-system/csi-controller"][0]["after"]
    assert predicted["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.18.0")


def test_check_mode_into_a_namespace_created_in_the_same_run(apiserver):
    engine = applier(apiserver, check_mode=True)
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "csi"}},
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "csi"}}]
    assert [r["action"] for r in apply_all(engine, objects)] == ["created", "created"]
    assert apiserver.writes == 0 and apiserver.get("Namespace", "csi") is None


def test_missing_namespace_is_named(apiserver):
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        applier(apiserver).apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "nope"}})
    assert "ServiceAccount nope/sa" in error.value.msg and "namespace nope does not exist" in error.value.msg


def test_changed_field_is_one_write(apiserver, deployed):
    objects = driver_objects()
    find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] = "example.org/driver:v2"
    before = apiserver.get("Deployment", "csi-controller", NS)
    results = apply_all(applier(apiserver), objects)
    assert [r["action"] for r in results].count("updated") == 1
    assert apiserver.write_log() == [("PATCH", "/apis/apps/v1/namespaces/kube-system/deployments/csi-controller")]
    after = apiserver.get("Deployment", "csi-controller", NS)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/driver:v2"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["metadata"]["uid"] == before["metadata"]["uid"]


def test_drift_by_another_writer_is_detected_and_reverted(apiserver, deployed):
    apiserver.edit("Deployment", "csi-controller", NS, {"spec": {"replicas": 3}})
    apiserver.edit("ClusterRole", "csi-provisioner", None, {"rules": []})
    results = {r["ref"]: r for r in apply_all(applier(apiserver), driver_objects())}
    assert results["Deployment kube-system/csi-controller"]["action"] == "updated"
    assert results["ClusterRole csi-provisioner"]["action"] == "updated"
    assert len(apiserver.write_log()) == 2
    assert apiserver.get("Deployment", "csi-controller", NS)["spec"]["replicas"] == 1
    assert len(apiserver.get("ClusterRole", "csi-provisioner")["rules"]) == 2
    owners = apiserver.managers("Deployment", "csi-controller", NS)
    assert ("spec", "replicas") in owners["kubestorage.enablement"] and "kubectl-edit" not in owners


def test_fields_added_by_others_are_tolerated(apiserver, deployed):
    apiserver.edit("StorageClass", "csi-hostpath", None, {"metadata": {"annotations": {"example.org/note": "mine"}}})
    results = apply_all(applier(apiserver), driver_objects())
    assert {r["action"] for r in results} == {"unchanged"} and apiserver.writes == 0


def test_a_field_no_longer_set_is_removed(apiserver, deployed):
    apiserver.edit("ServiceAccount", "csi-node", NS, {"metadata": {"labels": {"team": "storage"}}})
    objects = driver_objects()
    find(objects, "ServiceAccount")["metadata"]["labels"]["extra"] = "1"
    apply_all(applier(apiserver), objects)
    objects = driver_objects()
    node_sa = objects[1]
    del node_sa["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    apiserver.clear_log()
    results = {r["ref"]: r for r in apply_all(applier(apiserver), objects)}
    assert results["ServiceAccount kube-system/csi-node"]["action"] == "updated"
    assert results["ServiceAccount kube-system/csi-controller"]["action"] == "updated"
    labels = apiserver.get("ServiceAccount", "csi-node", NS)["metadata"]["labels"]
    assert "app.kubernetes.io/managed-by" not in labels and labels["team"] == "storage"
    assert "extra" not in apiserver.get("ServiceAccount", "csi-controller", NS)["metadata"]["labels"]
    assert apiserver.writes == 2
    hashes = apiserver.get("ServiceAccount", "csi-node", NS)["metadata"]["annotations"][k8s_apply.HASH_ANNOTATION]
    assert hashes == k8s_apply.applied_hash(node_sa)


def test_unknown_kind_and_missing_namespace_are_rejected_before_any_request(apiserver):
    engine = applier(apiserver)
    with pytest.raises(k8s_apply.K8sApplyError, match="unknown kind"):
        engine.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": NS}})
    with pytest.raises(k8s_apply.K8sApplyError, match="needs metadata.namespace"):
        engine.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}})
    assert engine.request_count == 0


# ---------------------------------------------------------------------------------------
# immutable fields and recreate


@pytest.mark.parametrize("change, field", [
    ({"parameters": {"fsType": "xfs"}}, "parameters"),
    ({"attach_required": True}, "spec.attachRequired"),
    ({"selector": {"app": "other"}}, "spec.selector"),
])
def test_immutable_change_fails_and_writes_nothing(apiserver, deployed, change, field):
    if "selector" in change:
        objects = driver_objects()
        dep = find(objects, "Deployment")
        dep["spec"]["selector"]["matchLabels"] = change["selector"]
        dep["spec"]["template"]["metadata"]["labels"] = change["selector"]
        ref = "Deployment kube-system/csi-controller"
    else:
        objects = driver_objects(**change)
        ref = "StorageClass csi-hostpath" if "parameters" in change else "CSIDriver %s" % DRIVER
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        apply_all(applier(apiserver), objects)
    assert ref in error.value.msg and field in error.value.msg
    assert "set recreate: true to delete and recreate it" in error.value.msg
    assert apiserver.writes == 0 and apiserver.dry_run_writes == 0


def test_recreate_deletes_and_recreates_only_that_object(apiserver, deployed):
    old = apiserver.get("StorageClass", "csi-hostpath")
    results = apply_all(applier(apiserver), driver_objects(parameters={"fsType": "xfs"}), recreate=True)
    actions = {r["ref"]: r["action"] for r in results}
    assert actions.pop("StorageClass csi-hostpath") == "recreated"
    assert set(actions.values()) == {"unchanged"}
    assert apiserver.write_log() == [("DELETE", "/apis/storage.k8s.io/v1/storageclasses/csi-hostpath"),
                                     ("PATCH", "/apis/storage.k8s.io/v1/storageclasses/csi-hostpath")]
    new = apiserver.get("StorageClass", "csi-hostpath")
    assert new["parameters"] == {"fsType": "xfs"} and new["metadata"]["uid"] != old["metadata"]["uid"]


def test_recreate_workload_uses_foreground_deletion(apiserver, deployed):
    objects = driver_objects()
    dep = find(objects, "Deployment")
    dep["spec"]["selector"]["matchLabels"] = dep["spec"]["template"]["metadata"]["labels"] = {"app": "v2"}
    result = applier(apiserver).apply(dep, recreate=True)
    assert result["action"] == "recreated" and result["before"]["spec"]["selector"]["matchLabels"] == {"app": "csi-controller"}
    delete = [entry for entry in apiserver.requests if entry.method == "DELETE"][0]
    assert delete.query == {"propagationPolicy": "Foreground"}


def test_recreate_in_check_mode_is_a_dry_run_delete_and_create(apiserver, deployed):
    old = apiserver.get("StorageClass", "csi-hostpath")
    engine = applier(apiserver, check_mode=True)
    result = engine.apply(find(driver_objects(parameters={"fsType": "xfs"}), "StorageClass"), recreate=True)
    assert result["action"] == "recreated"
    assert result["after"]["metadata"]["name"] == "csi-hostpath" and result["after"]["parameters"] == {"fsType": "xfs"}
    assert apiserver.writes == 0
    assert [(entry.method, entry.query.get("dryRun")) for entry in apiserver.requests] == [("GET", None), ("DELETE", "All"), ("POST", "All")]
    assert apiserver.get("StorageClass", "csi-hostpath") == old


def test_server_side_422_is_explained(apiserver, deployed):
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        applier(apiserver).merge_patch("StorageClass", "csi-hostpath", {"parameters": {"fsType": "xfs"}})
    msg = error.value.msg
    assert 'StorageClass.storage.k8s.io "csi-hostpath" is invalid: parameters: Forbidden: updates to parameters are forbidden.' in msg
    assert "HTTP 422" in msg and "StorageClass csi-hostpath" in msg and "recreate: true" in msg
    assert error.value.causes == ["parameters: Forbidden: updates to parameters are forbidden."]


# ---------------------------------------------------------------------------------------
# prune, delete, default class


def test_prune_deletes_managed_objects_no_longer_desired(apiserver, deployed):
    apiserver.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "someone-else", "namespace": NS}})
    apiserver.add({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "theirs", "namespace": NS}})
    desired = [obj for obj in driver_objects() if obj["kind"] not in ("Role", "RoleBinding", "DaemonSet")]
    engine = applier(apiserver)
    removed = engine.prune(desired, KINDS, SELECTOR, NS)
    assert removed == ["DaemonSet kube-system/csi-node", "RoleBinding kube-system/csi-leader-election", "Role kube-system/csi-leader-election"]
    assert [method for method, _path in apiserver.write_log()] == ["DELETE"] * 3
    assert apiserver.get("ServiceAccount", "someone-else", NS) is not None and apiserver.get("Role", "theirs", NS) is not None
    assert apiserver.get("Role", "csi-leader-election", NS) is None
    assert engine.requests["GET"] == len(KINDS)
    assert engine.prune(desired, KINDS, SELECTOR, NS) == []


def test_prune_in_check_mode_deletes_nothing(apiserver, deployed):
    desired = [obj for obj in driver_objects() if obj["kind"] != "StorageClass"]
    assert applier(apiserver, check_mode=True).prune(desired, KINDS, SELECTOR, NS) == ["StorageClass csi-hostpath"]
    assert apiserver.writes == 0 and apiserver.dry_run_writes == 1 and apiserver.get("StorageClass", "csi-hostpath")


def test_absent_deletes_in_safe_order(apiserver, deployed):
    engine = applier(apiserver)
    ordered = k8s_apply.sorted_for_delete(list(reversed(driver_objects())))
    assert [obj["kind"] for obj in ordered] == ["DaemonSet", "Deployment", "StorageClass", "CSIDriver", "RoleBinding", "Role",
                                                "ClusterRoleBinding", "ClusterRole", "ServiceAccount", "ServiceAccount"]
    for obj in ordered:
        assert engine.delete(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")) is True
    kinds = [path.split("/")[-2] for _method, path in apiserver.write_log()]
    assert kinds == ["daemonsets", "deployments", "storageclasses", "csidrivers", "rolebindings", "roles", "clusterrolebindings",
                     "clusterroles", "serviceaccounts", "serviceaccounts"]
    assert engine.list_managed(KINDS, SELECTOR, NS) == []
    assert engine.delete("CSIDriver", DRIVER) is False


def test_apply_order_is_the_reverse(apiserver):
    kinds = [obj["kind"] for obj in k8s_apply.sorted_for_apply(list(reversed(driver_objects())))]
    assert kinds == ["ServiceAccount", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CSIDriver",
                     "StorageClass", "Deployment", "DaemonSet"]


def test_list_managed_scopes(apiserver, deployed):
    apiserver.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    apiserver.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "other", "labels": LABELS}})
    engine = applier(apiserver)
    in_ns = engine.list_managed(["ServiceAccount", "StorageClass"], SELECTOR, NS)
    refs = sorted(k8s_apply.ref_of(obj) for obj in in_ns)
    assert refs == ["ServiceAccount kube-system/csi-controller", "ServiceAccount kube-system/csi-node", "StorageClass csi-hostpath"]
    everywhere = engine.list_managed(["ServiceAccount"], SELECTOR)
    assert len(everywhere) == 3 and all(obj["apiVersion"] == "v1" for obj in everywhere)
    assert engine.list_managed(["ServiceAccount"], "app.kubernetes.io/managed-by!=kubestorage.enablement", NS) == []


def _storage_class(name, annotations=None):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name, "annotations": annotations or {}},
            "provisioner": "example.org/other"}


def test_set_default_storage_class(apiserver, deployed):
    apiserver.add(_storage_class("standard", {k8s_apply.DEFAULT_CLASS_ANNOTATION: "true"}))
    apiserver.add(_storage_class("legacy", {k8s_apply.BETA_DEFAULT_CLASS_ANNOTATION: "true", "keep": "me"}))
    apiserver.add(_storage_class("plain", {k8s_apply.DEFAULT_CLASS_ANNOTATION: "false"}))
    apiserver.edit("StorageClass", "csi-hostpath", None, {"metadata": {"annotations": {k8s_apply.DEFAULT_CLASS_ANNOTATION: "true"}}})
    apiserver.clear_log()
    check = applier(apiserver, check_mode=True)
    assert k8s_apply.set_default_storage_class(check, "csi-hostpath") == ["legacy", "standard"]
    assert apiserver.writes == 0 and apiserver.dry_run_writes == 2
    assert k8s_apply.set_default_storage_class(applier(apiserver), "csi-hostpath") == ["legacy", "standard"]
    assert apiserver.get("StorageClass", "standard")["metadata"].get("annotations", {}) == {}
    assert apiserver.get("StorageClass", "legacy")["metadata"]["annotations"] == {"keep": "me"}
    assert apiserver.get("StorageClass", "plain")["metadata"]["annotations"] == {k8s_apply.DEFAULT_CLASS_ANNOTATION: "false"}
    patches = [index for index, entry in enumerate(apiserver.requests) if entry.method == "PATCH" and "dryRun" not in entry.query]
    assert all(entry.query == {} for entry in (apiserver.requests[index] for index in patches))
    assert all(("Content-Type", "application/merge-patch+json") in apiserver.request_headers[index] for index in patches)
    assert "kubestorage.enablement" not in apiserver.managers("StorageClass", "standard")


# ---------------------------------------------------------------------------------------
# retries and errors


def test_500_twice_then_success_is_retried(apiserver):
    injection = apiserver.inject("PATCH", r"/storageclasses/csi-hostpath$", 500, times=2)
    engine = applier(apiserver)
    result = engine.apply(find(driver_objects(), "StorageClass"))
    assert result["action"] == "created" and injection.hits == 2
    assert engine.requests == {"GET": 1, "PATCH": 3}


def test_500_beyond_retries_names_object_and_status(apiserver):
    apiserver.inject("PATCH", r"/storageclasses/", 500, times=10)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        applier(apiserver, retries=2).apply(find(driver_objects(), "StorageClass"))
    assert error.value.status == 500 and error.value.ref == "StorageClass csi-hostpath"
    assert "StorageClass csi-hostpath" in error.value.msg and "HTTP 500" in error.value.msg and "gave up after 3 attempt(s)" in error.value.msg


def test_429_and_503_on_reads_are_retried(apiserver, deployed):
    apiserver.inject("GET", r"/csidrivers/", 429)
    apiserver.inject("GET", r"/csidrivers/", 503)
    engine = applier(apiserver)
    assert engine.apply(find(driver_objects(), "CSIDriver"))["action"] == "unchanged"
    assert engine.requests == {"GET": 3}


def test_timeout_is_retried(apiserver, deployed):
    apiserver.inject("GET", r"/serviceaccounts/csi-node$", None, delay=1.0)
    engine = applier(apiserver, request_timeout=(2.0, 0.3))
    assert engine.apply(driver_objects()[1])["action"] == "unchanged"
    assert engine.requests == {"GET": 2}


def test_connection_error_gives_up_with_a_clear_message(apiserver):
    engine = applier(apiserver, retries=1)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine.api.configuration.host = "http://127.0.0.1:%d" % port
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        engine.apply(find(driver_objects(), "CSIDriver"))
    assert "cannot reach the API server" in error.value.msg and "gave up after 2 attempt(s)" in error.value.msg
    assert "CSIDriver %s" % DRIVER in error.value.msg


def test_403_names_verb_and_resource(apiserver):
    injection = apiserver.inject("PATCH", r"/clusterroles/", 403)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        applier(apiserver).apply(find(driver_objects(), "ClusterRole"))
    msg = error.value.msg
    assert "ClusterRole csi-provisioner" in msg and "HTTP 403" in msg
    assert "lacks RBAC permission to patch clusterroles.rbac.authorization.k8s.io (cluster-wide)" in msg
    assert 'cannot patch resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope' in msg
    assert injection.hits == 1


def test_403_on_a_namespaced_list(apiserver):
    apiserver.inject("GET", r"/namespaces/kube-system/roles$", 403)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        applier(apiserver).list_managed(["Role"], SELECTOR, NS)
    assert "list roles.rbac.authorization.k8s.io (in namespace kube-system)" in error.value.msg


@pytest.mark.apiserver(served_groups=ALL_GROUP_VERSIONS - {"storage.k8s.io/v1"})
def test_404_for_an_api_group_the_server_does_not_serve(apiserver):
    engine = applier(apiserver)
    assert engine.apply(driver_objects()[0])["action"] == "created"
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        engine.apply(find(driver_objects(), "CSIDriver"))
    msg = error.value.msg
    assert "CSIDriver %s" % DRIVER in msg and "HTTP 404" in msg and error.value.api_missing
    assert "the server does not serve storage.k8s.io/v1; Kubernetes too old or API disabled" in msg and ">= 1.18" in msg
    with pytest.raises(k8s_apply.K8sApplyError, match="does not serve storage.k8s.io/v1"):
        engine.list_managed(["StorageClass"], SELECTOR)


def test_409_on_apply_is_retried_then_reported(apiserver, deployed):
    apiserver.inject("PATCH", r"/deployments/csi-controller$", 409, times=1)
    objects = driver_objects(image="example.org/driver:v2")
    engine = applier(apiserver)
    assert engine.apply(find(objects, "Deployment"))["action"] == "updated"
    assert engine.requests["PATCH"] == 2
    apiserver.inject("PATCH", r"/daemonsets/csi-node$", 409, times=10)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        engine.apply(find(objects, "DaemonSet"))
    assert "DaemonSet kube-system/csi-node" in error.value.msg and "HTTP 409" in error.value.msg
    assert "conflict" in error.value.msg and "retried 3 time(s)" in error.value.msg


def test_401_asks_to_check_credentials(apiserver):
    apiserver.token = "secret"
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        k8s_apply.Applier(apiserver.api_client(token="wrong")).get("CSIDriver", DRIVER)
    assert "HTTP 401" in error.value.msg and "kubeconfig" in error.value.msg and "credentials" in error.value.msg


# ---------------------------------------------------------------------------------------
# waiting


def test_wait_ready_returns_once_workloads_are_ready(apiserver, deployed):
    engine = applier(apiserver)
    engine.wait_ready(driver_objects(), timeout=5, interval=0.05)
    assert engine.requests == {"GET": 2}


@pytest.mark.apiserver(workloads="never", create_pods=True, node_count=2)
def test_wait_ready_timeout_lists_workloads_and_pods(apiserver):
    objects = driver_objects()
    apply_all(applier(apiserver), objects)
    engine = applier(apiserver)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        engine.wait_ready(objects, timeout=0.3, interval=0.1)
    msg = error.value.msg
    assert "timed out after 0.3s" in msg and "2 workload(s)" in msg
    assert "Deployment kube-system/csi-controller: 1/1 updated, 0/1 available" in msg
    assert "DaemonSet kube-system/csi-node: 2/2 updated, 0/2 ready" in msg
    assert "pods not ready: csi-controller-" in msg
    assert 'container driver: ImagePullBackOff: Back-off pulling image "registry.k8s.io/sig-storage/hostpathplugin:v1.17.0"' in msg
    assert msg.count("(Pending;") == 3
    apiserver.set_readiness("Deployment", "csi-controller", NS, "ready")
    apiserver.set_readiness("DaemonSet", "csi-node", NS, "ready")
    engine.wait_ready(objects, timeout=2, interval=0.05)


def test_wait_ready_is_a_no_op_in_check_mode(apiserver):
    engine = applier(apiserver, check_mode=True)
    engine.wait_ready(driver_objects(), timeout=0)
    assert engine.request_count == 0


# ---------------------------------------------------------------------------------------
# connecting


def test_connect_with_a_kubeconfig_file(apiserver, tmp_path):
    apiserver.token = "t0ken"
    path = apiserver.write_kubeconfig(tmp_path / "config", context="lab")
    engine = k8s_apply.Applier(k8s_apply.connect({"kubeconfig": path, "context": "lab"}), retry_delay=0.01)
    assert engine.server_version() == "1.33"
    assert engine.apply(driver_objects()[0])["action"] == "created"
    assert ("Authorization", "Bearer t0ken") in apiserver.request_headers[0]


def test_connect_takes_the_kubeconfig_from_the_environment(apiserver, tmp_path, monkeypatch):
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", apiserver.write_kubeconfig(tmp_path / "config"))
    assert k8s_apply.Applier(k8s_apply.connect({})).get("Namespace", "default")["metadata"]["name"] == "default"


def test_connect_with_a_missing_kubeconfig_names_the_path(tmp_path):
    missing = str(tmp_path / "nope" / "config")
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        k8s_apply.connect({"kubeconfig": missing})
    assert missing in error.value.msg and "kubeconfig" in error.value.msg


def test_connect_without_any_configuration_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        k8s_apply.connect({})
    assert "~/.kube/config" in error.value.msg and "in-cluster" in error.value.msg


def test_connect_with_a_bad_context(apiserver, tmp_path):
    path = apiserver.write_kubeconfig(tmp_path / "config")
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        k8s_apply.connect({"kubeconfig": path, "context": "missing"})
    assert path in error.value.msg and "missing" in error.value.msg


def test_connect_with_host_token_and_impersonation(apiserver):
    apiserver.token = "abc"
    client = k8s_apply.connect({"host": apiserver.url + "/", "api_key": "abc", "verify_ssl": False,
                                "impersonate_user": "admin", "impersonate_groups": ["system:masters", "ops"]})
    assert client.configuration.verify_ssl is False
    assert k8s_apply.Applier(client).server_version() == "1.33"
    headers = apiserver.request_headers[-1]
    assert ("Impersonate-User", "admin") in headers
    assert [value for name, value in headers if name == "Impersonate-Group"] == ["system:masters", "ops"]
    client.close()


def test_tls_errors_are_not_retried(apiserver):
    client = k8s_apply.connect({"host": apiserver.url.replace("http://", "https://"), "api_key": "x"})
    engine = k8s_apply.Applier(client, retry_delay=0.01)
    with pytest.raises(k8s_apply.K8sApplyError) as error:
        engine.server_version()
    assert "TLS error" in error.value.msg and "ca_cert" in error.value.msg
    assert engine.request_count == 1
    client.close()


def test_connection_options_mirror_kubernetes_core(monkeypatch):
    assert set(k8s_apply.CONNECTION_ARGS) == {
        "kubeconfig", "context", "host", "api_key", "username", "password", "validate_certs", "ca_cert", "client_cert", "client_key",
        "proxy", "no_proxy", "proxy_headers", "persist_config", "impersonate_user", "impersonate_groups"}
    assert k8s_apply.CONNECTION_ARGS["api_key"]["no_log"] and k8s_apply.CONNECTION_ARGS["password"]["no_log"]
    assert k8s_apply.CONNECTION_ARGS["validate_certs"]["aliases"] == ["verify_ssl"]
    monkeypatch.setenv("K8S_AUTH_VERIFY_SSL", "no")
    monkeypatch.setenv("K8S_AUTH_HOST", "https://example.org:6443")
    monkeypatch.setenv("K8S_AUTH_IMPERSONATE_GROUPS", "a,b")
    monkeypatch.setenv("K8S_AUTH_PROXY_HEADERS_USER_AGENT", "me")
    options = k8s_apply.connection_options({"context": "x"})
    assert options["validate_certs"] is False and options["host"] == "https://example.org:6443"
    assert options["impersonate_groups"] == ["a", "b"] and options["proxy_headers"] == {"user_agent": "me"}
    assert k8s_apply.connection_options({"validate_certs": True})["validate_certs"] is True


def test_server_version_strips_the_plus(apiserver):
    apiserver.version_info.update(minor="30+", gitVersion="v1.30.4-eks-a737599")
    assert applier(apiserver).server_version() == "1.30"


# ---------------------------------------------------------------------------------------
# pure helpers


def test_object_diff_leaves_out_server_fields(apiserver, deployed):
    live = apiserver.get("StorageClass", "csi-hostpath")
    desired = copy.deepcopy(live)
    desired["parameters"] = {"fsType": "xfs"}
    diff = k8s_apply.object_diff(live, desired)
    for hidden in ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", k8s_apply.HASH_ANNOTATION):
        assert hidden not in diff["before"] and hidden not in diff["after"]
    assert "fsType: ext4" in diff["before"] and "fsType: xfs" in diff["after"]
    assert k8s_apply.object_diff(None, desired)["before"] == ""
    assert k8s_apply.object_diff(None, desired)["before_header"] == "StorageClass csi-hostpath (absent)"


def test_is_subset_tolerates_defaults_but_not_drift():
    desired = {"spec": {"containers": [{"name": "a", "args": []}], "hostNetwork": False}}
    live = {"spec": {"containers": [{"name": "a", "imagePullPolicy": "IfNotPresent"}], "dnsPolicy": "ClusterFirst"}}
    assert k8s_apply.is_subset(desired, live)
    assert not k8s_apply.is_subset({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}, live)
    assert not k8s_apply.is_subset({"spec": {"replicas": 1}}, {"spec": {"replicas": True}})
    assert not k8s_apply.is_subset({"spec": {"dnsPolicy": "Default"}}, live)


def test_immutable_changes_counts_unset_fields_as_their_defaults():
    live = {"provisioner": "p", "parameters": {"a": "1"}, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}
    assert k8s_apply.immutable_changes("StorageClass", live, {"provisioner": "p", "parameters": {"a": "1"}}) == []
    assert k8s_apply.immutable_changes("StorageClass", live, {"provisioner": "q", "reclaimPolicy": "Retain"}) == [
        "provisioner", "parameters", "reclaimPolicy"]
    assert k8s_apply.immutable_changes("StorageClass", None, {"provisioner": "q"}) == []
    selector = {"spec": {"selector": {"matchLabels": {"app": "a"}, "matchExpressions": []}}}
    assert k8s_apply.immutable_changes("DaemonSet", selector, {"spec": {"selector": {"matchLabels": {"app": "a"}}}}) == []


def test_selector_string():
    selector = {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["x", "y"]}, {"key": "gone", "operator": "DoesNotExist"}]}
    assert k8s_apply.selector_string(selector) == "a=1,b=2,tier in (x,y),!gone"


# ---------------------------------------------------------------------------------------
# the fake server itself (what the engine's tests rely on)

DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/kube-system/deployments/csi-controller"


def raw(apiserver, method, path, body=None, content_type="application/json"):
    """(status, decoded body) of one request sent with the kubernetes client's REST layer."""
    response = apiserver.api_client().rest_client.request(method, apiserver.url + path, headers={"Content-Type": content_type}, body=body)
    data = response.read().decode()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


def test_fake_server_metadata_and_no_op_writes(apiserver):
    created = applier(apiserver).apply(find(driver_objects(), "Deployment"))["after"]
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    rv = apiserver.get("Deployment", "csi-controller", NS)["metadata"]["resourceVersion"]
    body = k8s_apply.canonical_json(k8s_apply.desired_object(find(driver_objects(), "Deployment")))
    status, again = raw(apiserver, "PATCH", DEPLOYMENT_PATH + "?fieldManager=kubestorage.enablement&force=true", body,
                        "application/apply-patch+yaml")
    assert status == 200 and again["metadata"]["resourceVersion"] == rv
    apiserver.edit("Deployment", "csi-controller", NS, {"metadata": {"labels": {"x": "y"}}})
    edited = apiserver.get("Deployment", "csi-controller", NS)
    assert int(edited["metadata"]["resourceVersion"]) > int(rv) and edited["metadata"]["generation"] == 1
    assert edited["status"]["observedGeneration"] == 1 and edited["status"]["availableReplicas"] == 1


def test_fake_server_apply_without_force_conflicts(apiserver, deployed):
    apiserver.edit("Deployment", "csi-controller", NS, {"spec": {"replicas": 2}})
    body = k8s_apply.canonical_json(find(driver_objects(), "Deployment"))
    status, answer = raw(apiserver, "PATCH", DEPLOYMENT_PATH + "?fieldManager=kubestorage.enablement", body, "application/apply-patch+yaml")
    assert status == 409 and 'conflict with "kubectl-edit": .spec.replicas' in answer["message"]


def test_fake_server_post_conflict_label_selectors_and_404_text(apiserver):
    api = kubernetes.client.CoreV1Api(apiserver.api_client())
    body = {"metadata": {"name": "sa", "labels": {"tier": "x", "team": "a"}}}
    api.create_namespaced_service_account(NS, body)
    with pytest.raises(kubernetes.client.exceptions.ApiException) as error:
        api.create_namespaced_service_account(NS, body)
    assert error.value.status == 409 and "AlreadyExists" in error.value.body
    api.create_namespaced_service_account(NS, {"metadata": {"name": "dry"}}, dry_run="All")
    assert apiserver.get("ServiceAccount", "dry", NS) is None
    for selector, found in (("tier=x", 1), ("tier", 1), ("tier!=x", 0), ("!tier", 0), ("tier in (x,y),team", 1), ("team notin (a)", 0)):
        assert len(api.list_namespaced_service_account(NS, label_selector=selector).items) == found, selector
    assert raw(apiserver, "GET", "/apis/example.org/v1/things") == (404, "404 page not found\n")
    assert raw(apiserver, "GET", "/apis/storage.k8s.io/v1/namespaces/x/storageclasses/y")[0] == 404


def test_fake_server_put_status_and_patch_flavours(apiserver, deployed):
    live = apiserver.get("Deployment", "csi-controller", NS)
    stale = dict(live, metadata=dict(live["metadata"], resourceVersion="1"))
    assert raw(apiserver, "PUT", DEPLOYMENT_PATH, stale)[0] == 409
    assert raw(apiserver, "PUT", DEPLOYMENT_PATH, dict(live, spec=dict(live["spec"], replicas=2)))[1]["spec"]["replicas"] == 2
    status, answer = raw(apiserver, "PATCH", DEPLOYMENT_PATH + "/status", {"status": {"readyReplicas": 7}}, "application/merge-patch+json")
    assert status == 200 and answer["status"]["readyReplicas"] == 7 and answer["spec"]["replicas"] == 2
    assert raw(apiserver, "GET", DEPLOYMENT_PATH + "/status")[1]["status"]["readyReplicas"] == 7
    patch = [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    assert raw(apiserver, "PATCH", DEPLOYMENT_PATH, patch, "application/json-patch+json")[1]["spec"]["replicas"] == 3
    dry = raw(apiserver, "PATCH", DEPLOYMENT_PATH + "?dryRun=All", {"spec": {"replicas": 4}}, "application/merge-patch+json")
    assert dry[1]["spec"]["replicas"] == 4 and apiserver.get("Deployment", "csi-controller", NS)["spec"]["replicas"] == 3
    status, answer = raw(apiserver, "PATCH", DEPLOYMENT_PATH, "{}", "application/apply-patch+yaml")
    assert status == 400 and "fieldManager is required" in answer["message"]
    assert apiserver.applied_config("Deployment", "csi-controller", NS, "kubestorage.enablement")["spec"]["replicas"] == 1
