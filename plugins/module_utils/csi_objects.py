# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every Kubernetes object a CSI driver deployment needs, built from a compact description.

Pure functions (stdlib and PyYAML only, Python 3.9+, no network, no Ansible imports): modules
normalize their parameters with ``normalize_params``, build the desired objects with
``build_objects`` and apply them; unit tests call it directly.

Layout (reference notes, section 5; csi-driver-host-path's deploy dirs):

- a controller Deployment: the enabled controller sidecars in the order of ``SIDECARS``
  (provisioner, attacher, resizer, snapshotter, livenessprobe), then the driver container;
  they share the CSI socket through an ``emptyDir`` at ``/csi`` (``--csi-address=/csi/csi.sock``).
  It (and its ServiceAccount) is left out when no controller sidecar is enabled (a node-only
  driver). ``controller_replicas`` > 1 adds ``--leader-election`` and
  ``--leader-election-namespace`` to every controller sidecar;
- a node DaemonSet: node-driver-registrar, livenessprobe and the privileged driver container,
  with ``<kubelet_dir>/pods`` and ``<kubelet_dir>/plugins`` mounted with
  ``mountPropagation: Bidirectional``; the socket lives in ``<kubelet_dir>/plugins/<driver>``;
- one ServiceAccount per workload; a ClusterRole + ClusterRoleBinding and a Role + RoleBinding
  (leases for leader election; the provisioner's also covers CSIStorageCapacity) per enabled
  sidecar that talks to the API server (``RBAC_RULES``, the rules of each sidecar's
  ``deploy/kubernetes/rbac.yaml``); node-driver-registrar and livenessprobe need none;
- the CSIDriver object (``storage.k8s.io/v1``) and the StorageClasses.

Sidecar ``args`` are appended to the flags the builder sets (a user arg for one of those flags
is an error); ``sidecars.livenessprobe`` applies to the livenessprobe of both pods. The
snapshotter needs the VolumeSnapshot CRDs and the snapshot-controller, which are cluster
add-ons this builder does not create.

No Namespace is ever created: ``namespace`` (default ``kube-system``) must exist. Objects carry
``LABEL_MANAGED_BY`` and ``LABEL_DRIVER``, so everything a driver deployment owns can be
found (and removed, for ``state: absent``) by label selector without building it again.

Kubernetes versions (``MIN_VERSION`` = 1.24):

- CSIDriver ``storage.k8s.io/v1``: 1.18; ``attachRequired``, ``podInfoOnMount`` since then;
- ``fsGroupPolicy``: alpha 1.19, beta (on by default) 1.20, GA 1.23;
- ``storageCapacity`` and CSIStorageCapacity ``storage.k8s.io/v1``: GA 1.24; the field is
  mutable since 1.23;
- ``volumeLifecycleModes: [Ephemeral]`` (CSIInlineVolume): beta, on by default, 1.16; GA 1.25;
- oldest csi-driver-host-path deploy dir with ``registry.k8s.io`` images: kubernetes-1.24.

From 1.24 on every field the builder sets is served and kept by every supported version, so
no field depends on a feature gate; older versions are refused with a CsiParamError.
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

from ansible_collections.kubestorage.enablement.plugins.module_utils.feature_gates import GateError
from ansible_collections.kubestorage.enablement.plugins.module_utils.feature_gates import parse_version as gate_parse_version

FIELD_MANAGER = "kubestorage.enablement"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kubestorage.enablement"
LABEL_DRIVER = "kubestorage.enablement/csi-driver"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"

SIDECARS = ("provisioner", "attacher", "resizer", "snapshotter", "node_driver_registrar", "livenessprobe")
# Sidecars of the controller Deployment that talk to the API server (RBAC, leader election).
CONTROLLER_SIDECARS = ("provisioner", "attacher", "resizer", "snapshotter")
DEFAULT_REGISTRY = "registry.k8s.io/sig-storage"
MIN_VERSION = (1, 24)

STATES = ("present", "absent")
FS_GROUP_POLICIES = ("File", "ReadWriteOnceWithFSType", "None")
LIFECYCLE_MODES = ("Persistent", "Ephemeral")
RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_KUBELET_DIR = "/var/lib/kubelet"
DEFAULT_DRIVER_ARGS = ("--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)")
CSI_ENDPOINT = "unix:///csi/csi.sock"
CSI_ADDRESS = "/csi/csi.sock"
SOCKET_DIR = "/csi"
HEALTH_PORT = 9808

# Container name and image name (the part after the registry) of each sidecar.
SIDECAR_CONTAINERS = {
    "provisioner": "csi-provisioner",
    "attacher": "csi-attacher",
    "resizer": "csi-resizer",
    "snapshotter": "csi-snapshotter",
    "node_driver_registrar": "node-driver-registrar",
    "livenessprobe": "liveness-probe",
}
SIDECAR_IMAGE_NAMES = {
    "provisioner": "csi-provisioner",
    "attacher": "csi-attacher",
    "resizer": "csi-resizer",
    "snapshotter": "csi-snapshotter",
    "node_driver_registrar": "csi-node-driver-registrar",
    "livenessprobe": "livenessprobe",
}
DRIVER_CONTAINER = "csi-driver"


def _image_row(min_version, max_version, source, tags):
    images = {}
    for sidecar in SIDECARS:
        images[sidecar] = "%s/%s:%s" % (DEFAULT_REGISTRY, SIDECAR_IMAGE_NAMES[sidecar], tags[sidecar])
    return {"min_version": min_version, "max_version": max_version, "source": source, "images": images}


# Tested sidecar images per Kubernetes version range: the images of csi-driver-host-path's
# deploy/kubernetes-X.Y/hostpath/csi-hostpath-plugin.yaml, where kubernetes-X.Y serves X.Y up
# to the next dir (github.com/kubernetes-csi/csi-driver-host-path, file and commit in
# ``source``). The newest row is also used for versions newer than its dir.
# Every row gets RBAC_RULES (the current rules). Known differences to the older sidecars' own
# rbac.yaml: provisioner < v5 used ``update`` on persistentvolumes, needed only with its
# opt-in HonorPVReclaimPolicy gate (external-provisioner PR #1155 moved it to ``patch``);
# older snapshotter rbac.yaml files also granted ``create`` on volumesnapshotcontents.
IMAGE_SETS = (
    _image_row((1, 24), (1, 26), "deploy/kubernetes-1.24/hostpath/csi-hostpath-plugin.yaml @ c39fd0c3fca10ab002f7428dabc9c44578fc33d8", {
        "provisioner": "v3.3.0", "attacher": "v4.0.0", "resizer": "v1.6.0", "snapshotter": "v6.1.0",
        "node_driver_registrar": "v2.6.0", "livenessprobe": "v2.8.0"}),
    _image_row((1, 27), (1, 29), "deploy/kubernetes-1.27/hostpath/csi-hostpath-plugin.yaml @ 482f780e9e4b086d0b37110739a944cd64b9d504", {
        "provisioner": "v4.0.0", "attacher": "v4.5.0", "resizer": "v1.10.0", "snapshotter": "v7.0.0",
        "node_driver_registrar": "v2.10.0", "livenessprobe": "v2.12.0"}),
    _image_row((1, 30), (1, 33), "deploy/kubernetes-1.30/hostpath/csi-hostpath-plugin.yaml @ 26a73015629c122c540492754ede1f484fdc9f3a", {
        "provisioner": "v5.3.0", "attacher": "v4.8.1", "resizer": "v1.13.2", "snapshotter": "v8.2.1",
        "node_driver_registrar": "v2.14.0", "livenessprobe": "v2.15.0"}),
    _image_row((1, 34), None, "deploy/kubernetes-1.34/hostpath/csi-hostpath-plugin.yaml @ 3c6f759f893a10eac631d5309adca736b506ab82 (k8s 1.34/1.35)", {
        "provisioner": "v6.3.0", "attacher": "v4.12.0", "resizer": "v2.2.1", "snapshotter": "v8.6.0",
        "node_driver_registrar": "v2.17.0", "livenessprobe": "v2.19.0"}),
)


def _rule(group, resources, verbs):
    return {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}


_LEASES = _rule("coordination.k8s.io", ["leases"], ["get", "watch", "list", "delete", "update", "create"])
_EVENTS = _rule("", ["events"], ["list", "watch", "create", "update", "patch"])

# RBAC of each sidecar (reference notes, section 5: each sidecar repo's deploy/kubernetes/rbac.yaml).
# "cluster": ClusterRole rules; "namespaced": Role rules in the driver's namespace.
RBAC_RULES = {
    "provisioner": {
        "cluster": [
            _rule("", ["persistentvolumes"], ["get", "list", "watch", "create", "patch", "delete"]),
            _rule("", ["persistentvolumeclaims"], ["get", "list", "watch", "update"]),
            _rule("storage.k8s.io", ["storageclasses"], ["get", "list", "watch"]),
            _EVENTS,
            _rule("snapshot.storage.k8s.io", ["volumesnapshots"], ["get", "list", "watch", "update"]),
            _rule("snapshot.storage.k8s.io", ["volumesnapshotcontents"], ["get", "list"]),
            _rule("storage.k8s.io", ["csinodes"], ["get", "list", "watch"]),
            _rule("", ["nodes"], ["get", "list", "watch"]),
            _rule("storage.k8s.io", ["volumeattachments"], ["get", "list", "watch"]),
        ],
        "namespaced": [
            _LEASES,
            _rule("storage.k8s.io", ["csistoragecapacities"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
            _rule("", ["pods"], ["get"]),
            _rule("apps", ["replicasets"], ["get"]),
        ],
    },
    "attacher": {
        "cluster": [
            _rule("", ["persistentvolumes"], ["get", "list", "watch", "patch"]),
            _rule("storage.k8s.io", ["csinodes"], ["get", "list", "watch"]),
            _rule("storage.k8s.io", ["volumeattachments"], ["get", "list", "watch", "patch"]),
            _rule("storage.k8s.io", ["volumeattachments/status"], ["patch"]),
        ],
        "namespaced": [_LEASES],
    },
    "resizer": {
        "cluster": [
            _rule("", ["persistentvolumes"], ["get", "list", "watch", "patch"]),
            _rule("", ["persistentvolumeclaims"], ["get", "list", "watch"]),
            _rule("", ["pods"], ["get", "list", "watch"]),
            _rule("", ["persistentvolumeclaims/status"], ["patch"]),
            _EVENTS,
            _rule("storage.k8s.io", ["volumeattributesclasses"], ["get", "list", "watch"]),
        ],
        "namespaced": [_LEASES],
    },
    "snapshotter": {
        "cluster": [
            _EVENTS,
            _rule("snapshot.storage.k8s.io", ["volumesnapshotclasses"], ["get", "list", "watch"]),
            _rule("snapshot.storage.k8s.io", ["volumesnapshotcontents"], ["get", "list", "watch", "update", "patch"]),
            _rule("snapshot.storage.k8s.io", ["volumesnapshotcontents/status"], ["update", "patch"]),
        ],
        "namespaced": [_LEASES],
    },
}

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(r"^%s$" % _DNS_LABEL)
_DNS_SUBDOMAIN_RE = re.compile(r"^%s(?:\.%s)*$" % (_DNS_LABEL, _DNS_LABEL))
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_BASE_MAX = 44  # longest suffix is "-snapshotter-runner" (19): names stay <= 63
_HASH_LEN = 8


class CsiParamError(ValueError):
    """A bad parameter. ``param`` is its dotted path, ``msg`` names it, the problem and the fix."""

    def __init__(self, param, problem, fix):
        msg = "%s: %s. %s" % (param, problem, fix)
        super().__init__(msg)
        self.param = param
        self.msg = msg


# ---------------------------------------------------------------------------------------
# Versions and images


def parse_version(text, param="kubernetes_version"):
    """(major, minor) from "1.33", "1.33.2", "v1.33.2" or "v1.33.2+k3s1" (feature_gates'
    parser: only major and minor matter here). Raise CsiParamError otherwise."""
    if isinstance(text, bool) or not isinstance(text, (str, tuple, list)):
        raise CsiParamError(param, "%r is not a Kubernetes version" % (text,), "Give it as a string such as 1.33, 1.33.2 or v1.33.2")
    try:
        parts = gate_parse_version(text)
    except GateError as exc:
        raise CsiParamError(param, exc.msg, "Give it as a string such as 1.33, 1.33.2 or v1.33.2") from None
    return parts[:2]


def _supported_version(text, param="kubernetes_version"):
    version = parse_version(text, param)
    if version < MIN_VERSION:
        raise CsiParamError(
            param, "Kubernetes %d.%d is older than %d.%d, the oldest version supported (fsGroupPolicy is GA from 1.23, storageCapacity and "
            "CSIStorageCapacity storage.k8s.io/v1 from 1.24, and the oldest tested sidecar images are for 1.24)" % (version + MIN_VERSION),
            "Upgrade the cluster to %d.%d or later, or give the cluster's real version" % MIN_VERSION)
    return version


def _image_set(version):
    for row in IMAGE_SETS:
        if row["min_version"] <= version and (row["max_version"] is None or version <= row["max_version"]):
            return row
    return IMAGE_SETS[-1]


def _check_image(value, param):
    if not isinstance(value, str) or not _IMAGE_RE.match(value) or "://" in value:
        raise CsiParamError(param, "%r is not a container image reference" % (value,),
                            "Give a reference such as registry.k8s.io/sig-storage/csi-attacher:v4.12.0 (no scheme, no spaces)")
    return value


def _check_registry(value, param="image_registry"):
    if value is None:
        return None
    parts = value.rstrip("/").split("/") if isinstance(value, str) else []
    if (not isinstance(value, str) or not value.strip("/") or not _IMAGE_RE.match(value.rstrip("/")) or "://" in value or "@" in value
            or (len(parts) > 1 and ":" in parts[-1])):
        raise CsiParamError(param, "%r is not a registry path" % (value,),
                            "Give the part of the image before the image name, such as mirror.example.com:5000/sig-storage (no scheme, no tag)")
    return value.rstrip("/")


def images_for(kubernetes_version, image_registry=None, overrides=None):
    """{sidecar: image} for a Kubernetes version (IMAGE_SETS). ``image_registry`` replaces the
    registry part (``DEFAULT_REGISTRY``) of the default images; ``overrides`` ({sidecar: image})
    replaces whole images and is not affected by ``image_registry``."""
    version = _supported_version(kubernetes_version)
    registry = _check_registry(image_registry)
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise CsiParamError("overrides", "%r is not a mapping" % (overrides,), "Give a mapping of sidecar name to image")
    for key in overrides:
        if key not in SIDECARS:
            raise CsiParamError("overrides.%s" % key, "unknown sidecar", "Use one of %s" % ", ".join(SIDECARS))
    row = _image_set(version)
    result = {}
    for sidecar in SIDECARS:
        if overrides.get(sidecar) is not None:
            result[sidecar] = _check_image(overrides[sidecar], "overrides.%s" % sidecar)
            continue
        image = row["images"][sidecar]
        if registry is not None:
            image = registry + image[len(DEFAULT_REGISTRY):]
        result[sidecar] = image
    return result


# ---------------------------------------------------------------------------------------
# Parameters


def _given(params, key):
    return params.get(key) is not None


def _default(params, key, default):
    return params[key] if _given(params, key) else default


def _bool(value, param):
    if not isinstance(value, bool):
        raise CsiParamError(param, "%r is not a boolean" % (value,), "Give true or false")
    return value


def _choice(value, choices, param):
    if value not in choices:
        raise CsiParamError(param, "%r is not one of %s" % (value, ", ".join(choices)), "Use one of %s (the spelling is case-sensitive)" % ", ".join(choices))
    return value


def _str_list(value, param):
    if not isinstance(value, (list, tuple)):
        raise CsiParamError(param, "%r is not a list" % (value,), "Give a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise CsiParamError("%s[%d]" % (param, index), "%r is not a string" % (item,), "Give every item as a string (quote numbers and booleans)")
    return list(value)


def _mapping(value, param):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CsiParamError(param, "%r is not a mapping" % (value,), "Give a mapping")
    return value


def _driver_name(value, param="name"):
    fix = "Use the driver's name as it reports it in GetPluginInfo, such as hostpath.csi.k8s.io"
    if not isinstance(value, str) or not value:
        raise CsiParamError(param, "%r is not a CSI driver name" % (value,), fix)
    if len(value) > 63 or not _DNS_SUBDOMAIN_RE.match(value):
        raise CsiParamError(
            param, "%r is not a valid CSI driver name (at most 63 characters; lowercase letters, digits, '-' and '.', each dot-separated part "
            "starting and ending with a letter or digit; no '/' and no '..')" % (value,), fix)
    return value


def _namespace(value, param="namespace"):
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise CsiParamError(param, "%r is not a namespace name (a DNS-1123 label of at most 63 characters)" % (value,),
                            "Give an existing namespace such as kube-system")
    return value


def _kubelet_dir(value, param="kubelet_dir"):
    if not isinstance(value, str) or not value.startswith("/"):
        raise CsiParamError(param, "%r is not an absolute path" % (value,), "Give kubelet's root dir (--root-dir) such as /var/lib/kubelet")
    if ".." in value.split("/") or any(c in value for c in "\n\r\t\0"):
        raise CsiParamError(param, "%r contains '..' or a control character" % (value,), "Give the real path of kubelet's root dir, such as /var/lib/kubelet")
    path = posixpath.normpath(re.sub("/+", "/", value))
    if path == "/":
        raise CsiParamError(param, "'/' cannot be kubelet's root dir", "Give kubelet's root dir (--root-dir) such as /var/lib/kubelet")
    return path


def _flag_name(arg):
    return arg.split("=", 1)[0].lstrip("-")


def _sidecars(value, attach_required):
    value = _mapping(value, "sidecars")
    for key in value:
        if key not in SIDECARS:
            raise CsiParamError("sidecars.%s" % key, "unknown sidecar", "Use one of %s" % ", ".join(SIDECARS))
    defaults = {"provisioner": True, "attacher": attach_required, "resizer": True, "snapshotter": False,
                "node_driver_registrar": True, "livenessprobe": True}
    result = {}
    for sidecar in SIDECARS:
        path = "sidecars.%s" % sidecar
        item = _mapping(value.get(sidecar), path)
        for key in item:
            if key not in ("enabled", "image", "args"):
                raise CsiParamError("%s.%s" % (path, key), "unknown option", "Use enabled, image or args")
        enabled = defaults[sidecar] if item.get("enabled") is None else _bool(item["enabled"], path + ".enabled")
        image = None if item.get("image") is None else _check_image(item["image"], path + ".image")
        args = [] if item.get("args") is None else _str_list(item["args"], path + ".args")
        result[sidecar] = {"enabled": enabled, "image": image, "args": args}
    if result["attacher"]["enabled"] and not attach_required:
        raise CsiParamError("sidecars.attacher.enabled", "the attacher is enabled while attach_required is false (Kubernetes creates no "
                            "VolumeAttachment objects for the driver, so the attacher would have nothing to do)",
                            "Set attach_required: true if the driver implements ControllerPublishVolume, or leave the attacher disabled")
    if attach_required and not result["attacher"]["enabled"]:
        raise CsiParamError("sidecars.attacher.enabled", "the attacher is disabled while attach_required is true (VolumeAttachments would "
                            "never be attached and pods would wait forever)",
                            "Enable the attacher, or set attach_required: false if the driver does not implement ControllerPublishVolume")
    if not result["node_driver_registrar"]["enabled"]:
        raise CsiParamError("sidecars.node_driver_registrar.enabled", "the node-driver-registrar cannot be disabled: kubelet finds the "
                            "driver's socket only through its plugin registration", "Remove enabled: false")
    return result


def _qualified_key(key, param):
    if not isinstance(key, str) or not key:
        raise CsiParamError(param, "%r is not a label or annotation key" % (key,), "Give a key such as example.com/tier")
    prefix, name = key.rsplit("/", 1) if "/" in key else ("", key)
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix))) or len(name) > 63 or not _LABEL_NAME_RE.match(name):
        raise CsiParamError(param, "%r is not a valid label or annotation key" % (key,),
                            "Give an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.'")
    return key


def _string_value(value, param):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise CsiParamError(param, "%r is not a string" % (value,), "Give a string, number or boolean")


def _string_map(value, param, label_values=False, reserved=()):
    value = _mapping(value, param)
    result = {}
    for key in sorted(value, key=str):
        if not isinstance(key, str) or not key:
            raise CsiParamError(param, "%r is not a key" % (key,), "Give non-empty string keys")
        if key in reserved:
            raise CsiParamError("%s.%s" % (param, key), "is set by the builder", reserved[key])
        if value[key] is None:
            raise CsiParamError("%s.%s" % (param, key), "has no value", "Give a value or remove the key")
        text = _string_value(value[key], "%s.%s" % (param, key))
        if label_values:
            _qualified_key(key, "%s.%s" % (param, key))
            if text and (len(text) > 63 or not _LABEL_NAME_RE.match(text)):
                raise CsiParamError("%s.%s" % (param, key), "%r is not a valid label value" % (text,),
                                    "Give at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
        result[key] = text
    return result


_SC_KEYS = ("name", "provisioner", "parameters", "reclaim_policy", "volume_binding_mode", "allow_volume_expansion", "mount_options",
            "allowed_topologies", "default", "labels", "annotations")


def normalize_storage_class(sc_params, default_provisioner=None, path=""):
    """Defaults applied and checked: a dict with every key of _SC_KEYS. ``path`` prefixes the
    parameter names in errors (``storage_classes[0].``)."""
    if not isinstance(sc_params, dict):
        raise CsiParamError(path.rstrip(".") or "storage_class", "%r is not a mapping" % (sc_params,), "Give a mapping with at least name")
    for key in sc_params:
        if key not in _SC_KEYS:
            raise CsiParamError(path + str(key), "unknown storage class option", "Use one of %s" % ", ".join(_SC_KEYS))
    name = sc_params.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN_RE.match(name):
        raise CsiParamError(path + "name", "%r is not a StorageClass name" % (name,),
                            "Give a DNS-1123 subdomain (lowercase letters, digits, '-' and '.') such as fast-ssd")
    provisioner = sc_params.get("provisioner") if _given(sc_params, "provisioner") else default_provisioner
    if provisioner is None:
        raise CsiParamError(path + "provisioner", "is required", "Give the CSI driver name, such as hostpath.csi.k8s.io")
    _driver_name(provisioner, path + "provisioner")
    result = {"name": name, "provisioner": provisioner}
    result["parameters"] = _string_map(sc_params.get("parameters"), path + "parameters")
    result["reclaim_policy"] = _choice(_default(sc_params, "reclaim_policy", "Delete"), RECLAIM_POLICIES, path + "reclaim_policy")
    result["volume_binding_mode"] = _choice(_default(sc_params, "volume_binding_mode", "Immediate"), BINDING_MODES, path + "volume_binding_mode")
    expansion = sc_params.get("allow_volume_expansion")
    result["allow_volume_expansion"] = None if expansion is None else _bool(expansion, path + "allow_volume_expansion")
    result["mount_options"] = _str_list(_default(sc_params, "mount_options", []), path + "mount_options")
    topologies = _default(sc_params, "allowed_topologies", [])
    if not isinstance(topologies, (list, tuple)) or not all(isinstance(item, dict) for item in topologies):
        raise CsiParamError(path + "allowed_topologies", "%r is not a list of mappings" % (topologies,),
                            "Give TopologySelectorTerms such as [{matchLabelExpressions: [{key: topology.kubernetes.io/zone, values: [a]}]}]")
    result["allowed_topologies"] = copy.deepcopy(list(topologies))
    result["default"] = False if sc_params.get("default") is None else _bool(sc_params["default"], path + "default")
    own = "Use the storage class's default option, not the annotation"
    result["labels"] = _string_map(sc_params.get("labels"), path + "labels", label_values=True,
                                   reserved={LABEL_MANAGED_BY: "Remove it: it marks what this collection manages",
                                             LABEL_DRIVER: "Remove it: it names the CSI driver"})
    result["annotations"] = _string_map(sc_params.get("annotations"), path + "annotations",
                                        reserved={DEFAULT_CLASS_ANNOTATION: own, BETA_DEFAULT_CLASS_ANNOTATION: own})
    for key in result["annotations"]:
        _qualified_key(key, path + "annotations." + key)
    return result


_TOP_KEYS = ("state", "name", "namespace", "driver_image", "driver_args", "attach_required", "pod_info_on_mount", "fs_group_policy",
             "volume_lifecycle_modes", "storage_capacity", "sidecars", "controller_replicas", "kubelet_dir", "image_registry",
             "storage_classes", "kubernetes_version")


def normalize_params(params):
    """Defaults applied and every value checked; raises CsiParamError. Keys other than the
    builder's parameters (a module's connection options) are ignored; None means "not given".
    Idempotent: normalizing the result again gives the same dict.

    Decisions: the attacher runs exactly when attach_required is true (enabling it with
    attach_required false, or disabling it with attach_required true, is an error); the
    node-driver-registrar cannot be disabled; storage_capacity needs the provisioner;
    driver_image is required unless state is absent; at most one storage class is the default.
    """
    if not isinstance(params, dict):
        raise CsiParamError("params", "%r is not a mapping" % (params,), "Give the parameters as a mapping")
    p = {}
    p["state"] = _choice(_default(params, "state", "present"), STATES, "state")
    p["name"] = _driver_name(params.get("name"))
    p["namespace"] = _namespace(params.get("namespace") if _given(params, "namespace") else DEFAULT_NAMESPACE)
    if _given(params, "driver_image"):
        p["driver_image"] = _check_image(params["driver_image"], "driver_image")
    elif p["state"] == "present":
        raise CsiParamError("driver_image", "is required with state present", "Give the CSI driver's container image, such as "
                            "registry.k8s.io/sig-storage/hostpathplugin:v1.17.1")
    else:
        p["driver_image"] = None
    p["driver_args"] = _str_list(params["driver_args"], "driver_args") if _given(params, "driver_args") else list(DEFAULT_DRIVER_ARGS)
    p["attach_required"] = _bool(params["attach_required"], "attach_required") if _given(params, "attach_required") else True
    p["pod_info_on_mount"] = _bool(params["pod_info_on_mount"], "pod_info_on_mount") if _given(params, "pod_info_on_mount") else False
    p["fs_group_policy"] = _choice(_default(params, "fs_group_policy", "ReadWriteOnceWithFSType"), FS_GROUP_POLICIES, "fs_group_policy")
    modes = _str_list(params["volume_lifecycle_modes"], "volume_lifecycle_modes") if _given(params, "volume_lifecycle_modes") else ["Persistent"]
    if not modes:
        raise CsiParamError("volume_lifecycle_modes", "is empty", "Give Persistent, Ephemeral or both")
    for index, mode in enumerate(modes):
        _choice(mode, LIFECYCLE_MODES, "volume_lifecycle_modes[%d]" % index)
        if mode in modes[:index]:
            raise CsiParamError("volume_lifecycle_modes[%d]" % index, "%s is given twice" % mode, "Give each mode once")
    p["volume_lifecycle_modes"] = modes
    p["storage_capacity"] = _bool(params["storage_capacity"], "storage_capacity") if _given(params, "storage_capacity") else False
    p["sidecars"] = _sidecars(params.get("sidecars"), p["attach_required"])
    if p["storage_capacity"] and not p["sidecars"]["provisioner"]["enabled"]:
        raise CsiParamError("storage_capacity", "needs the provisioner sidecar, which publishes the CSIStorageCapacity objects (without them "
                            "the scheduler finds no capacity and pods stay pending)", "Enable sidecars.provisioner or set storage_capacity: false")
    replicas = params.get("controller_replicas")
    if replicas is None:
        replicas = 1
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise CsiParamError("controller_replicas", "%r is not a whole number of at least 1" % (replicas,), "Give 1, or more for leader-elected replicas")
    p["controller_replicas"] = replicas
    p["kubelet_dir"] = _kubelet_dir(params["kubelet_dir"]) if _given(params, "kubelet_dir") else DEFAULT_KUBELET_DIR
    p["image_registry"] = _check_registry(params.get("image_registry"))
    classes = params.get("storage_classes")
    if classes is None:
        classes = []
    if not isinstance(classes, (list, tuple)):
        raise CsiParamError("storage_classes", "%r is not a list" % (classes,), "Give a list of storage classes, each with at least name")
    p["storage_classes"] = []
    default_at = None
    for index, item in enumerate(classes):
        sc = normalize_storage_class(item, p["name"], "storage_classes[%d]." % index)
        if any(other["name"] == sc["name"] for other in p["storage_classes"]):
            raise CsiParamError("storage_classes[%d].name" % index, "%s is given twice" % sc["name"], "Give each storage class once")
        if sc["default"]:
            if default_at is not None:
                raise CsiParamError("storage_classes[%d].default" % index, "storage_classes[%d] is the default already; more than one default "
                                    "storage class is a misconfiguration" % default_at, "Mark at most one storage class default: true")
            default_at = index
        p["storage_classes"].append(sc)
    version = params.get("kubernetes_version")
    p["kubernetes_version"] = None if version is None else "%d.%d" % _supported_version(version)
    return p


# ---------------------------------------------------------------------------------------
# Names and labels


def base_name(driver):
    """"csi-" + the driver name with dots as dashes (hostpath.csi.k8s.io ->
    csi-hostpath-csi-k8s-io); longer than 44 characters: cut, plus "-" and 8 hex characters of
    the name's sha256, so every derived name is a DNS-1123 label of at most 63 characters."""
    base = "csi-" + driver.replace(".", "-")
    if len(base) > _BASE_MAX:
        digest = hashlib.sha256(driver.encode("utf-8")).hexdigest()[:_HASH_LEN]
        base = base[:_BASE_MAX - _HASH_LEN - 1].rstrip("-") + "-" + digest
    return base


def object_names(driver):
    """Every derived object name, by role."""
    base = base_name(driver)
    names = {
        "controller": base + "-controller",
        "node": base + "-node",
        "controller_service_account": base + "-controller",
        "node_service_account": base + "-node",
    }
    for sidecar in CONTROLLER_SIDECARS:
        names[sidecar + "_cluster_role"] = "%s-%s-runner" % (base, sidecar)
        names[sidecar + "_role"] = "%s-%s-cfg" % (base, sidecar)
    return names


def _labels(driver):
    return {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_DRIVER: driver}


def _selector(driver, component):
    return {LABEL_NAME: base_name(driver), LABEL_COMPONENT: component, LABEL_DRIVER: driver}


def _meta(name, driver, namespace=None):
    meta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels(driver)
    return meta


# ---------------------------------------------------------------------------------------
# Objects


def _service_account(name, p):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, p["name"], p["namespace"])}


def _rbac(p, names, sidecars):
    rbac_api = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": names["controller_service_account"], "namespace": p["namespace"]}]
    cluster_roles, cluster_bindings, roles, bindings = [], [], [], []
    for sidecar in sidecars:
        cr_name = names[sidecar + "_cluster_role"]
        role_name = names[sidecar + "_role"]
        cluster_roles.append({"apiVersion": rbac_api, "kind": "ClusterRole", "metadata": _meta(cr_name, p["name"]),
                              "rules": copy.deepcopy(RBAC_RULES[sidecar]["cluster"])})
        cluster_bindings.append({"apiVersion": rbac_api, "kind": "ClusterRoleBinding", "metadata": _meta(cr_name, p["name"]),
                                 "subjects": copy.deepcopy(subject),
                                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr_name}})
        roles.append({"apiVersion": rbac_api, "kind": "Role", "metadata": _meta(role_name, p["name"], p["namespace"]),
                      "rules": copy.deepcopy(RBAC_RULES[sidecar]["namespaced"])})
        bindings.append({"apiVersion": rbac_api, "kind": "RoleBinding", "metadata": _meta(role_name, p["name"], p["namespace"]),
                         "subjects": copy.deepcopy(subject),
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name}})
    return cluster_roles + cluster_bindings + roles + bindings


def _csi_driver(p):
    spec = {
        "attachRequired": p["attach_required"],
        "podInfoOnMount": p["pod_info_on_mount"],
        "fsGroupPolicy": p["fs_group_policy"],
        "volumeLifecycleModes": list(p["volume_lifecycle_modes"]),
        "storageCapacity": p["storage_capacity"],
    }
    return {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": _meta(p["name"], p["name"]), "spec": spec}


def _field_env(name, path):
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _args(p, sidecar, own):
    """The builder's args, then the user's; a user arg for a flag the builder sets is an error."""
    extra = p["sidecars"][sidecar]["args"]
    owned = {_flag_name(arg) for arg in own}
    for index, arg in enumerate(extra):
        if _flag_name(arg) in owned:
            raise CsiParamError("sidecars.%s.args[%d]" % (sidecar, index), "%s is set by the builder (%s)" % (arg, ", ".join(own)),
                                "Remove it; the builder derives it from the other parameters")
    return list(own) + list(extra)


def _socket_mount():
    return {"name": "socket-dir", "mountPath": SOCKET_DIR}


def _controller_sidecar(p, sidecar, image):
    own = ["--csi-address=%s" % CSI_ADDRESS]
    env = []
    if p["controller_replicas"] > 1:
        own += ["--leader-election", "--leader-election-namespace=%s" % p["namespace"]]
    if sidecar == "provisioner" and p["storage_capacity"]:
        # CSIStorageCapacity objects owned by the Deployment (pod -> ReplicaSet -> Deployment).
        own += ["--enable-capacity", "--capacity-ownerref-level=2"]
        env = [_field_env("NAMESPACE", "metadata.namespace"), _field_env("POD_NAME", "metadata.name")]
    container = {"name": SIDECAR_CONTAINERS[sidecar], "image": image, "args": _args(p, sidecar, own)}
    if env:
        container["env"] = env
    container["volumeMounts"] = [_socket_mount()]
    return container


def _livenessprobe(p, image):
    own = ["--csi-address=%s" % CSI_ADDRESS, "--health-port=%d" % HEALTH_PORT]
    return {"name": SIDECAR_CONTAINERS["livenessprobe"], "image": image, "args": _args(p, "livenessprobe", own),
            "volumeMounts": [_socket_mount()]}


def _driver_container(p, privileged, mounts):
    container = {
        "name": DRIVER_CONTAINER,
        "image": p["driver_image"],
        "args": list(p["driver_args"]),
        "env": [{"name": "CSI_ENDPOINT", "value": CSI_ENDPOINT}, _field_env("KUBE_NODE_NAME", "spec.nodeName")],
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    if p["sidecars"]["livenessprobe"]["enabled"]:
        container["ports"] = [{"name": "healthz", "containerPort": HEALTH_PORT, "protocol": "TCP"}]
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "healthz"}, "initialDelaySeconds": 10,
                                      "timeoutSeconds": 3, "periodSeconds": 2, "failureThreshold": 5}
    container["volumeMounts"] = mounts
    return container


def _pod_template(p, component, service_account, containers, volumes):
    labels = dict(_selector(p["name"], component))
    labels[LABEL_MANAGED_BY] = MANAGED_BY_VALUE
    return {"metadata": {"labels": labels},
            "spec": {"serviceAccountName": service_account, "containers": containers, "volumes": volumes}}


def _deployment(p, names, images):
    containers = []
    for sidecar in CONTROLLER_SIDECARS:
        if p["sidecars"][sidecar]["enabled"]:
            containers.append(_controller_sidecar(p, sidecar, images[sidecar]))
    if p["sidecars"]["livenessprobe"]["enabled"]:
        containers.append(_livenessprobe(p, images["livenessprobe"]))
    containers.append(_driver_container(p, False, [_socket_mount()]))
    volumes = [{"name": "socket-dir", "emptyDir": {}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(names["controller"], p["name"], p["namespace"]),
        "spec": {"replicas": p["controller_replicas"], "selector": {"matchLabels": _selector(p["name"], "controller")},
                 "template": _pod_template(p, "controller", names["controller_service_account"], containers, volumes)},
    }


def _daemonset(p, names, images):
    kubelet_dir = p["kubelet_dir"]
    plugin_dir = "%s/plugins/%s" % (kubelet_dir, p["name"])
    registrar_own = ["--csi-address=%s" % CSI_ADDRESS, "--kubelet-registration-path=%s/csi.sock" % plugin_dir]
    containers = [{
        "name": SIDECAR_CONTAINERS["node_driver_registrar"],
        "image": images["node_driver_registrar"],
        "args": _args(p, "node_driver_registrar", registrar_own),
        "env": [_field_env("KUBE_NODE_NAME", "spec.nodeName")],
        # Only needed with SELinux, where unprivileged containers cannot reach the socket the
        # privileged driver creates (as in csi-driver-host-path).
        "securityContext": {"privileged": True},
        "volumeMounts": [_socket_mount(), {"name": "registration-dir", "mountPath": "/registration"}],
    }]
    if p["sidecars"]["livenessprobe"]["enabled"]:
        containers.append(_livenessprobe(p, images["livenessprobe"]))
    containers.append(_driver_container(p, True, [
        _socket_mount(),
        {"name": "mountpoint-dir", "mountPath": kubelet_dir + "/pods", "mountPropagation": "Bidirectional"},
        {"name": "plugins-dir", "mountPath": kubelet_dir + "/plugins", "mountPropagation": "Bidirectional"},
        {"name": "dev-dir", "mountPath": "/dev"},
    ]))
    # Directory (not DirectoryOrCreate) for what kubelet itself creates: a wrong kubelet_dir
    # then fails the pod visibly instead of creating dirs kubelet never reads.
    volumes = [
        {"name": "socket-dir", "hostPath": {"path": plugin_dir, "type": "DirectoryOrCreate"}},
        {"name": "registration-dir", "hostPath": {"path": kubelet_dir + "/plugins_registry", "type": "Directory"}},
        {"name": "mountpoint-dir", "hostPath": {"path": kubelet_dir + "/pods", "type": "Directory"}},
        {"name": "plugins-dir", "hostPath": {"path": kubelet_dir + "/plugins", "type": "Directory"}},
        {"name": "dev-dir", "hostPath": {"path": "/dev", "type": "Directory"}},
    ]
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(names["node"], p["name"], p["namespace"]),
        "spec": {"selector": {"matchLabels": _selector(p["name"], "node")},
                 "template": _pod_template(p, "node", names["node_service_account"], containers, volumes)},
    }


def _storage_class_object(sc, driver_label):
    metadata = {"name": sc["name"]}
    labels = _labels(driver_label)
    labels.update(sc["labels"])
    metadata["labels"] = labels
    annotations = {}
    if sc["default"]:
        annotations[DEFAULT_CLASS_ANNOTATION] = "true"
    annotations.update(sc["annotations"])
    if annotations:
        metadata["annotations"] = annotations
    obj = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata, "provisioner": sc["provisioner"]}
    if sc["parameters"]:
        obj["parameters"] = dict(sc["parameters"])
    obj["reclaimPolicy"] = sc["reclaim_policy"]
    obj["volumeBindingMode"] = sc["volume_binding_mode"]
    if sc["allow_volume_expansion"] is not None:
        obj["allowVolumeExpansion"] = sc["allow_volume_expansion"]
    if sc["mount_options"]:
        obj["mountOptions"] = list(sc["mount_options"])
    if sc["allowed_topologies"]:
        obj["allowedTopologies"] = copy.deepcopy(sc["allowed_topologies"])
    return obj


def build_storage_class(sc_params, default_provisioner=None):
    """A StorageClass object. LABEL_DRIVER is default_provisioner when given (the driver the
    class is deployed with), else the class's provisioner."""
    sc = normalize_storage_class(sc_params, default_provisioner)
    return _storage_class_object(sc, default_provisioner or sc["provisioner"])


def build_objects(params, kubernetes_version):
    """The full desired object set, in apply order: ServiceAccounts, ClusterRoles,
    ClusterRoleBindings, Roles, RoleBindings, CSIDriver, Deployment, DaemonSet, StorageClasses.
    ``kubernetes_version`` (else params' kubernetes_version) picks the sidecar images."""
    p = normalize_params(params)
    version_text = kubernetes_version if kubernetes_version is not None else p["kubernetes_version"]
    if version_text is None:
        raise CsiParamError("kubernetes_version", "is required to build the objects (it picks the sidecar images)",
                            "Give the cluster's version, such as 1.33")
    version = _supported_version(version_text)
    if p["driver_image"] is None:
        raise CsiParamError("driver_image", "is required to build the workloads", "Give the CSI driver's container image")
    overrides = {sidecar: p["sidecars"][sidecar]["image"] for sidecar in SIDECARS if p["sidecars"][sidecar]["image"]}
    images = images_for(version, p["image_registry"], overrides)
    names = object_names(p["name"])
    rbac_sidecars = [sidecar for sidecar in CONTROLLER_SIDECARS if p["sidecars"][sidecar]["enabled"]]
    objects = []
    if rbac_sidecars:
        objects.append(_service_account(names["controller_service_account"], p))
    objects.append(_service_account(names["node_service_account"], p))
    objects.extend(_rbac(p, names, rbac_sidecars))
    objects.append(_csi_driver(p))
    if rbac_sidecars:
        objects.append(_deployment(p, names, images))
    objects.append(_daemonset(p, names, images))
    for sc in p["storage_classes"]:
        objects.append(_storage_class_object(sc, p["name"]))
    return objects


# ---------------------------------------------------------------------------------------
# Files


def dump_yaml(obj):
    """Block-style YAML of one object, keys in the builder's order."""
    if yaml is None:  # pragma: no cover
        raise RuntimeError("PyYAML is required to render files")
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def render_files(objects):
    """{file name: YAML text}: one ``NN-<kind>-<name>.yaml`` per object (NN keeps the apply
    order) and a ``kustomization.yaml`` listing them in that order."""
    width = max(2, len(str(len(objects))))
    files = {}
    resources = []
    for index, obj in enumerate(objects, start=1):
        name = "%0*d-%s-%s.yaml" % (width, index, obj["kind"].lower(), obj["metadata"]["name"])
        files[name] = dump_yaml(obj)
        resources.append(name)
    files["kustomization.yaml"] = dump_yaml({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources})
    return files
