# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the csi_driver and storage_class modules do, as plain functions.

csi_objects builds the objects, k8s_apply talks to the API server; this module strings them
together: deploy (apply, prune, default class, wait), remove (everything labelled as this
deployment, in a safe order), render (files for GitOps, no cluster), and one StorageClass.
"""

from __future__ import annotations

import os

from ansible_collections.kubestorage.enablement.plugins.module_utils import csi_objects as co
from ansible_collections.kubestorage.enablement.plugins.module_utils import k8s_apply as ka

# Every kind a CSI driver deployment is made of (what prune and removal look for).
MANAGED_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CSIDriver",
                 "Deployment", "DaemonSet", "StorageClass")
WORKLOADS = ("Deployment", "DaemonSet")
KUSTOMIZATION = "kustomization.yaml"


def run_module(module, work):
    """Exit the module with work()'s result; bad parameters and API errors fail it with their message.

    The result's "diff" is returned only in diff mode.
    """
    try:
        result = work()
    except co.CsiParamError as exc:
        module.fail_json(msg=str(exc))
    except ka.K8sApplyError as exc:
        module.fail_json(msg=exc.msg, ref=exc.ref, status=exc.status)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


def selector(driver_name):
    """The label selector of one CSI driver deployment's objects."""
    return "%s=%s,%s=%s" % (co.LABEL_MANAGED_BY, co.MANAGED_BY_VALUE, co.LABEL_DRIVER, driver_name)


def workload_images(objects):
    """Every container image of the Deployments and DaemonSets among objects, sorted."""
    return sorted({c["image"] for obj in objects if obj["kind"] in WORKLOADS for c in obj["spec"]["template"]["spec"]["containers"]})


def _summary(result):
    return {"ref": result["ref"], "action": result["action"]}


def _diff(results, extra=()):
    """Ansible diff: one before/after pair per object that changed."""
    diffs = []
    for result in results:
        if result["action"] == "unchanged":
            continue
        pair = ka.object_diff(result["before"], result["after"])
        pair.update(before_header=result["ref"], after_header=result["ref"])
        diffs.append(pair)
    for ref, before in extra:
        pair = ka.object_diff(before, None)
        pair.update(before_header=ref, after_header="%s (deleted)" % ref)
        diffs.append(pair)
    return diffs


def deploy(applier, params, kubernetes_version, prune=True, recreate=False, wait=False, wait_timeout=300):
    """Apply a CSI driver's objects; returns the module's result fields (changed included).

    Validation happens before any request (build_objects raises CsiParamError). Then every
    object is applied in order, stale ones are pruned, a default StorageClass is made the
    only default, and (not in check mode) the rollout is waited for.
    """
    objects = co.build_objects(params, kubernetes_version)
    lives = [applier.get(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")) for obj in objects]
    if not recreate:
        check_immutable(objects, lives, kubernetes_version)
    results = [applier.apply(obj, recreate=recreate, live=live) for obj, live in zip(objects, lives)]
    pruned = []
    if prune:
        namespace = co.normalize_params(params)["namespace"]
        pruned = applier.prune(objects, MANAGED_KINDS, selector(params["name"]), namespace)
    defaults = [obj["metadata"]["name"] for obj in objects
                if obj["kind"] == "StorageClass" and (obj["metadata"].get("annotations") or {}).get(co.DEFAULT_CLASS_ANNOTATION) == "true"]
    undefaulted = []
    for name in defaults:
        undefaulted.extend(ka.set_default_storage_class(applier, name))
    if wait and not applier.check_mode:
        applier.wait_ready([obj for obj in objects if obj["kind"] in WORKLOADS], wait_timeout)
    changed = any(r["action"] != "unchanged" for r in results) or bool(pruned) or bool(undefaulted)
    return {
        "changed": changed,
        "objects": [_summary(r) for r in results],
        "pruned": pruned,
        "default_removed_from": undefaulted,
        "kubernetes_version": str(kubernetes_version),
        "images": workload_images(objects),
        "diff": _diff(results),
    }


def check_immutable(objects, lives, kubernetes_version):
    """Raise K8sApplyError naming every object whose immutable fields would change, before any write."""
    problems = []
    for obj, live in zip(objects, lives):
        fields = ka.immutable_changes(obj["kind"], live, obj, kubernetes_version)
        if fields:
            problems.append("%s (%s)" % (ka.ref_of(obj), ", ".join(fields)))
    if problems:
        raise ka.K8sApplyError("cannot change immutable fields in place: %s. Nothing was written. Set recreate: true to "
                               "delete and recreate only these objects" % "; ".join(problems))


def remove(applier, params):
    """Delete every object labelled as this driver deployment, workloads first."""
    namespace = co.normalize_params(dict(params, state="absent"))["namespace"]
    live = applier.list_managed(MANAGED_KINDS, selector(params["name"]), namespace)
    live = [obj for obj in live if not (obj.get("metadata") or {}).get("deletionTimestamp")]
    removed, before = [], []
    for obj in ka.sorted_for_delete(live):
        meta = obj["metadata"]
        if applier.delete(obj["kind"], meta["name"], meta.get("namespace")):
            ref = ka.ref_of(obj)
            removed.append(ref)
            before.append((ref, obj))
    return {"changed": bool(removed), "removed": removed, "objects": [], "pruned": [], "default_removed_from": [],
            "diff": _diff([], before)}


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _ours(name):
    """A file render_files writes: NN-<kind>-<name>.yaml or kustomization.yaml."""
    head = name.split("-", 1)[0]
    return name == KUSTOMIZATION or (name.endswith(".yaml") and head.isdigit() and len(head) == 2)


def plan_render(params, output_dir):
    """{"write": {name: text}, "delete": [names], "diff": [...], "objects": [...]} for output_dir.

    Files of an earlier render that are no longer part of the set (a sidecar turned off) are
    deleted; other files in the dir are left alone.
    """
    objects = co.build_objects(params, None)
    files = co.render_files(objects)
    write, diffs = {}, []
    for name in sorted(files):
        before = _read(os.path.join(output_dir, name))
        if before != files[name]:
            write[name] = files[name]
            diffs.append({"before": before or "", "after": files[name], "before_header": os.path.join(output_dir, name),
                          "after_header": os.path.join(output_dir, name)})
    stale = []
    if os.path.isdir(output_dir):
        stale = sorted(name for name in os.listdir(output_dir) if _ours(name) and name not in files)
    for name in stale:
        diffs.append({"before": _read(os.path.join(output_dir, name)) or "", "after": "",
                      "before_header": os.path.join(output_dir, name), "after_header": "(deleted)"})
    return {"write": write, "delete": stale, "diff": diffs, "objects": objects, "files": sorted(files)}


def storage_class(applier, sc_params, recreate=False):
    """Create or update one StorageClass; with default true it becomes the only default."""
    obj = co.build_storage_class(sc_params)
    result = applier.apply(obj, recreate=recreate)
    undefaulted = []
    if (obj["metadata"].get("annotations") or {}).get(co.DEFAULT_CLASS_ANNOTATION) == "true":
        undefaulted = ka.set_default_storage_class(applier, obj["metadata"]["name"])
    return {"changed": result["action"] != "unchanged" or bool(undefaulted), "action": result["action"],
            "default_removed_from": undefaulted, "diff": _diff([result]), "storage_class": _plain(result["after"])}


def _plain(obj):
    """obj without managedFields (what a user wants to see of a live object)."""
    if not obj:
        return obj
    obj = dict(obj, metadata=dict(obj.get("metadata") or {}))
    obj["metadata"].pop("managedFields", None)
    return obj


def remove_storage_class(applier, name):
    before = applier.get("StorageClass", name)
    if before is None:
        return {"changed": False, "action": "absent", "default_removed_from": [], "diff": []}
    applier.delete("StorageClass", name)
    return {"changed": True, "action": "deleted", "default_removed_from": [],
            "diff": _diff([], [(ka.ref_of(before), before)])}
