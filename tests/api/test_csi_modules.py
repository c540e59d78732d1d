# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The csi_driver and storage_class modules, run as Ansible runs them (a Python process reading
its arguments as JSON), with the real kubernetes client over HTTP against the fake API server.

Each test counts the requests the server saw: a no-op run makes no writes, check mode makes
only dryRun=All writes, a refused change writes nothing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml


COLLECTIONS = Path(__file__).resolve().parents[2] / ".cache" / "collections"
DRIVER = "hostpath.csi.k8s.io"
BASE = "csi-hostpath-csi-k8s-io"
HOSTPATH = {
    "name": DRIVER,
    "driver_image": "registry.k8s.io/sig-storage/hostpathplugin:v1.17.0",
    "driver_args": ["--drivername=hostpath.csi.k8s.io", "--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"],
    "storage_classes": [{"name": "csi-hostpath", "default": True, "volume_binding_mode": "WaitForFirstConsumer"}],
}


def run_module(name, args, check=False, diff=False):
    """Run plugins/modules/<name>.py the way Ansible does; return (failed, result)."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=diff)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8S_AUTH_") and k != "KUBECONFIG"}
    env["PYTHONPATH"] = str(COLLECTIONS)
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.kubestorage.enablement.plugins.modules." + name],
                          input=json.dumps(payload), capture_output=True, text=True, env=env, timeout=120, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON: %s %s" % (name, proc.stdout, proc.stderr))
    return bool(result.get("failed")), result


@pytest.fixture
def connect(apiserver, tmp_path):
    """Connection options for the fake server, through a kubeconfig file as a user would."""
    return {"kubeconfig": apiserver.write_kubeconfig(tmp_path / "kubeconfig")}


def deploy(connect, check=False, diff=False, **changes):
    return run_module("csi_driver", dict(HOSTPATH, **connect, **changes), check=check, diff=diff)


def managed(apiserver):
    found = []
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CSIDriver", "Deployment",
                 "DaemonSet", "StorageClass"):
        for obj in apiserver.list(kind):
            labels = obj["metadata"].get("labels") or {}
            if labels.get("kubestorage.enablement/csi-driver") == DRIVER:
                found.append("%s %s" % (kind, obj["metadata"]["name"]))
    return sorted(found)


def test_first_apply_creates_everything_and_a_second_makes_no_writes(apiserver, connect):
    failed, first = deploy(connect)
    assert not failed, first["msg"]
    assert first["changed"] and {o["action"] for o in first["objects"]} == {"created"}
    created = managed(apiserver)
    assert len(created) == len(first["objects"]) >= 15
    assert "CSIDriver %s" % DRIVER in created and "DaemonSet %s-node" % BASE in created
    assert first["kubernetes_version"] == "1.33"        # read from the server's /version
    assert apiserver.writes == len(first["objects"])

    apiserver.clear_log()
    failed, second = deploy(connect)
    assert not failed and not second["changed"]
    assert {o["action"] for o in second["objects"]} == {"unchanged"}
    assert apiserver.writes == 0 and apiserver.dry_run_writes == 0
    assert second["requests"].get("PATCH", 0) == 0


def test_check_mode_writes_nothing_and_predicts(apiserver, connect):
    failed, result = deploy(connect, check=True, diff=True)
    assert not failed, result.get("msg")
    assert result["changed"] and {o["action"] for o in result["objects"]} == {"created"}
    assert apiserver.writes == 0 and apiserver.dry_run_writes == len(result["objects"])
    assert managed(apiserver) == []
    assert len(result["diff"]) == len(result["objects"])
    assert all(d["before"] == "" and "kind:" in d["after"] for d in result["diff"])


def test_a_disabled_sidecar_is_pruned_and_prune_false_keeps_it(apiserver, connect):
    deploy(connect)
    no_resizer = {"resizer": {"enabled": False}}
    failed, kept = deploy(connect, sidecars=no_resizer, prune=False)
    assert not failed and kept["pruned"] == []
    assert "ClusterRole %s-resizer-runner" % BASE in managed(apiserver)
    failed, pruned = deploy(connect, sidecars=no_resizer)
    assert not failed, pruned.get("msg")
    assert sorted(pruned["pruned"]) == sorted(["ClusterRole %s-resizer-runner" % BASE, "ClusterRoleBinding %s-resizer-runner" % BASE,
                                               "Role kube-system/%s-resizer-cfg" % BASE, "RoleBinding kube-system/%s-resizer-cfg" % BASE])
    assert not any("resizer" in name for name in managed(apiserver))
    failed, again = deploy(connect, sidecars=no_resizer)
    assert not again["changed"] and again["pruned"] == []


def test_an_immutable_change_fails_without_writes_and_recreate_replaces_only_that_object(apiserver, connect):
    deploy(connect)
    before = apiserver.get("CSIDriver", DRIVER)["metadata"]["uid"]
    apiserver.clear_log()
    failed, refused = deploy(connect, attach_required=False)
    assert failed
    assert "CSIDriver %s (spec.attachRequired)" % DRIVER in refused["msg"] and "recreate: true" in refused["msg"]
    assert apiserver.writes == 0 and apiserver.dry_run_writes == 0

    failed, recreated = deploy(connect, attach_required=False, recreate=True)
    assert not failed, recreated.get("msg")
    actions = {o["ref"]: o["action"] for o in recreated["objects"]}
    assert actions["CSIDriver %s" % DRIVER] == "recreated"
    assert [ref for ref, action in actions.items() if action == "recreated"] == ["CSIDriver %s" % DRIVER]
    assert apiserver.get("CSIDriver", DRIVER)["metadata"]["uid"] != before
    assert apiserver.get("CSIDriver", DRIVER)["spec"]["attachRequired"] is False
    assert not any("attacher" in name for name in managed(apiserver))     # the attacher went with it


def test_absent_removes_everything_workloads_first(apiserver, connect):
    deploy(connect)
    apiserver.add({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "not-ours"},
                   "provisioner": "example.com/other"})
    apiserver.clear_log()
    failed, result = run_module("csi_driver", dict(name=DRIVER, state="absent", **connect))
    assert not failed and result["changed"]
    assert managed(apiserver) == []
    assert apiserver.get("StorageClass", "not-ours") is not None
    deletes = [path for method, path in apiserver.write_log() if method == "DELETE"]
    assert "daemonsets" in deletes[0] or "deployments" in deletes[0]
    failed, again = run_module("csi_driver", dict(name=DRIVER, state="absent", **connect))
    assert not failed and not again["changed"]


def test_transient_errors_are_retried_and_others_named(apiserver, connect):
    apiserver.inject("PATCH", r"/csidrivers/", 500, times=2)
    failed, result = deploy(connect)
    assert not failed and result["changed"], result.get("msg")

    apiserver.inject("GET", r"/csidrivers/", 403, times=1)
    failed, result = deploy(connect)
    assert failed and "CSIDriver %s" % DRIVER in result["msg"] and "403" in result["msg"]

    apiserver.inject("PATCH", r"/storageclasses/", 409, times=10)
    failed, result = deploy(connect, storage_classes=[{"name": "csi-hostpath", "parameters": {"a": "b"}}], recreate=True)
    assert failed and "StorageClass csi-hostpath" in result["msg"] and "409" in result["msg"]


def test_bad_parameters_fail_before_any_request(apiserver, connect):
    apiserver.clear_log()
    failed, result = deploy(connect, name="../etc")
    assert failed and result["msg"].startswith("name:")
    failed, result = deploy(connect, sidecars={"attacher": {"enabled": False}})
    assert failed and "sidecars.attacher" in result["msg"]
    failed, result = run_module("csi_driver", dict(HOSTPATH, kubeconfig="/nonexistent/kubeconfig"))
    assert failed and "/nonexistent/kubeconfig" in result["msg"]
    assert apiserver.requests == []


def test_wait_reports_pods_that_are_not_ready(connect, apiserver):
    apiserver.workloads = "never"
    apiserver.create_pods = True
    failed, result = deploy(connect, wait=True, wait_timeout=3)
    assert failed
    assert "%s-node" % BASE in result["msg"] and "ImagePullBackOff" in result["msg"]


def test_storage_class_default_is_the_only_default(apiserver, connect):
    apiserver.add({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "example.com/old",
                   "metadata": {"name": "old-default", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}})
    args = dict(name="fast", provisioner=DRIVER, default=True, parameters={"replicas": 1}, **connect)
    failed, result = run_module("storage_class", args, check=True)
    assert not failed and result["changed"] and result["default_removed_from"] == ["old-default"]
    assert apiserver.get("StorageClass", "fast") is None and apiserver.writes == 0
    failed, result = run_module("storage_class", args)
    assert not failed and result["action"] == "created" and result["default_removed_from"] == ["old-default"]
    old = apiserver.get("StorageClass", "old-default")
    assert "storageclass.kubernetes.io/is-default-class" not in (old["metadata"].get("annotations") or {})
    assert apiserver.get("StorageClass", "fast")["parameters"] == {"replicas": "1"}
    failed, result = run_module("storage_class", args)
    assert not failed and not result["changed"]
    failed, result = run_module("storage_class", dict(args, parameters={"replicas": 2}))
    assert failed and "parameters" in result["msg"] and "recreate" in result["msg"]
    failed, result = run_module("storage_class", dict(name="fast", state="absent", **connect))
    assert not failed and result["action"] == "deleted" and apiserver.get("StorageClass", "fast") is None


def test_output_dir_renders_valid_files_without_a_cluster(tmp_path):
    out = tmp_path / "deploy"
    args = dict(HOSTPATH, output_dir=str(out), kubernetes_version="1.33", host="https://192.0.2.1:6443")
    failed, result = run_module("csi_driver", args)
    assert not failed and result["changed"], result.get("msg")
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f for f in result["files"] if f != "kustomization.yaml")
    for name in kustomization["resources"]:
        obj = yaml.safe_load((out / name).read_text())
        kubernetes_validate.validate(obj, "1.33", strict=True)
    failed, again = run_module("csi_driver", args)
    assert not failed and not again["changed"]
    failed, fewer = run_module("csi_driver", dict(args, sidecars={"resizer": {"enabled": False}}), check=True, diff=True)
    assert fewer["changed"] and any("resizer" in name for name in fewer["deleted_files"])
    assert any("resizer" in name for name in os.listdir(out))          # check mode kept them
