# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Applying Kubernetes objects to a cluster with server-side apply, for the csi_driver module.

Plain Python (no Ansible imports): connect() turns kubernetes.core-style connection options
into a kubernetes.client.ApiClient, and Applier applies, compares, prunes, deletes and waits.

Requests go through the client's REST layer with raw paths built from the static KINDS
table: no discovery and no DynamicClient, so every request is one the work needs, and
Applier.requests counts them. A re-run that changes nothing costs one GET per object:
the engine stamps the annotation kubestorage.enablement/applied-hash (sha256 of the desired
object) on what it applies, and an object is unchanged when that annotation matches and the
live object still holds every field the desired object sets (server-added defaults are
tolerated, edits by other writers are not).

Writes are server-side apply (PATCH application/apply-patch+yaml) with force=true: the
collection owns these objects, so a field another writer changed is taken back instead of
failing with a conflict. Check mode sends the same requests with dryRun=All.

Known limits of the unchanged check: the desired objects should use the forms the API server
stores (e.g. "500m", not 0.5, for a CPU quantity); a value the server normalises differently
makes every run re-apply (and report "unchanged" after the no-op write).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import re
import time
import traceback
from urllib.parse import quote, urlencode

from ansible_collections.kubestorage.enablement.plugins.module_utils.feature_gates import parse_version

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a requirement of ansible-core
    yaml = None
    HAS_YAML = False

try:
    import kubernetes
    import kubernetes.client
    import kubernetes.config
    import urllib3
    from kubernetes.client.exceptions import ApiException
    # Several Impersonate-Group headers need a multi-value header dict (top-level in urllib3 2).
    HTTPHeaderDict = getattr(urllib3, "HTTPHeaderDict", None) or urllib3._collections.HTTPHeaderDict
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    kubernetes = None
    urllib3 = None
    ApiException = None
    HTTPHeaderDict = None
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

HASH_ANNOTATION = "kubestorage.enablement/applied-hash"
_NOT_READ = object()
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
FIELD_MANAGER = "kubestorage.enablement"

# kind -> (apiVersion, plural, namespaced). An object's own apiVersion wins when it differs
# (e.g. storage.k8s.io/v1beta1 on an old cluster); the plural and the scope come from here.
KINDS = {
    "Namespace": ("v1", "namespaces", False),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Pod": ("v1", "pods", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "CSIDriver": ("storage.k8s.io/v1", "csidrivers", False),
    "StorageClass": ("storage.k8s.io/v1", "storageclasses", False),
    "Deployment": ("apps/v1", "deployments", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
}

# Safe removal order (state: absent, prune): workloads first, so that nothing runs with
# permissions or a driver registration that is already gone; then the storage objects, the
# RBAC bindings before their roles, and the service accounts last.
DELETE_ORDER = ("DaemonSet", "Deployment", "StorageClass", "CSIDriver", "RoleBinding", "Role",
                "ClusterRoleBinding", "ClusterRole", "ServiceAccount")

# Creation order: the reverse, with the namespace and config maps before anything that uses them.
APPLY_ORDER = ("Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
               "CSIDriver", "StorageClass", "Deployment", "DaemonSet")

WORKLOAD_KINDS = ("Deployment", "DaemonSet")

# The Kubernetes release that first served an API version of a kind, for 404 messages.
MIN_SERVER_VERSION = {
    ("CSIDriver", "storage.k8s.io/v1"): "1.18",
    ("CSIDriver", "storage.k8s.io/v1beta1"): "1.14 (removed in 1.22)",
    ("StorageClass", "storage.k8s.io/v1"): "1.6",
    ("Deployment", "apps/v1"): "1.9",
    ("DaemonSet", "apps/v1"): "1.9",
}

# StorageClass fields the API server refuses to update, with the value it stores when the
# field is not set (so that leaving out a default is not taken for a change).
STORAGE_CLASS_IMMUTABLE = (("provisioner", None), ("parameters", {}), ("reclaimPolicy", "Delete"),
                           ("volumeBindingMode", "Immediate"))

# Metadata the API server sets; left out of diffs and of the comparison with the desired object.
SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")

RETRY_STATUSES = (429, 500, 502, 503, 504)

_ENV_PREFIX = "K8S_AUTH_"

# Connection options, named and typed as kubernetes.core's (args_common.AUTH_ARG_SPEC).
# Each unset option falls back to the environment variable K8S_AUTH_<OPTION> (for the
# aliased ones also K8S_AUTH_<ALIAS>, e.g. K8S_AUTH_VERIFY_SSL); connect() does the lookup.
CONNECTION_ARGS = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"]},
    "proxy": {"type": "str"},
    "no_proxy": {"type": "str"},
    "proxy_headers": {
        "type": "dict",
        "options": {
            "proxy_basic_auth": {"type": "str", "no_log": True},
            "basic_auth": {"type": "str", "no_log": True},
            "user_agent": {"type": "str"},
        },
    },
    "persist_config": {"type": "bool"},
    "impersonate_user": {"type": "str"},
    "impersonate_groups": {"type": "list", "elements": "str"},
}


class K8sApplyError(Exception):
    """A request the engine could not carry out.

    .msg names the object ("Kind namespace/name"), the HTTP status and reason, the cause and,
    where one is known, the fix. .ref, .status (None without an HTTP answer), .reason and
    .causes (the server's field causes for a 422) are the parts; .api_missing is True when
    the server does not serve the object's API group/version.
    """

    def __init__(self, msg, ref=None, status=None, reason=None, causes=None, api_missing=False):
        self.msg = msg
        self.ref = ref
        self.status = status
        self.reason = reason
        self.causes = causes or []
        self.api_missing = api_missing
        super().__init__(msg)


class _HttpFailure(Exception):
    """A non-2xx answer or a transport error, before it is given the object's context."""

    def __init__(self, status, reason, payload, attempts, error=None, tls=False):
        self.status = status
        self.reason = reason
        self.payload = payload
        self.attempts = attempts
        self.error = error
        self.tls = tls
        super().__init__("%s %s" % (status, reason))

    @property
    def retryable(self):
        """Transport errors (but not TLS ones), 429 and 5xx."""
        if self.status is None:
            return not self.tls
        return self.status in RETRY_STATUSES

    @property
    def status_object(self):
        """The server's Status object, or None when the body was not one."""
        if isinstance(self.payload, dict) and self.payload.get("kind") == "Status":
            return self.payload
        return None

    @property
    def message(self):
        status = self.status_object
        if status and status.get("message"):
            return status["message"]
        if isinstance(self.payload, str) and self.payload.strip():
            return self.payload.strip()[:300]
        return ""

    @property
    def object_missing(self):
        """True for a 404 about an object (a Status NotFound), False for a path the server does not serve."""
        status = self.status_object
        return self.status == 404 and bool(status) and status.get("reason") == "NotFound"


class _Target:
    """Where an object lives: kind, apiVersion, plural, scope, name and namespace."""

    def __init__(self, kind, name=None, namespace=None, api_version=None):
        if kind not in KINDS:
            raise K8sApplyError("%s: unknown kind; the engine knows %s" % (kind, ", ".join(sorted(KINDS))), ref=kind)
        default_version, self.plural, self.namespaced = KINDS[kind]
        self.kind = kind
        self.api_version = api_version or default_version
        self.name = name
        self.namespace = namespace if self.namespaced else None

    @property
    def group(self):
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self):
        """plural.group, as the API server names a resource in RBAC messages."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def ref(self):
        return object_ref(self.kind, self.name, self.namespace)

    def path(self, with_name=True):
        base = "/api/%s" % self.api_version if "/" not in self.api_version else "/apis/%s" % self.api_version
        if self.namespaced and self.namespace:
            base += "/namespaces/%s" % quote(self.namespace, safe="")
        base += "/" + self.plural
        if with_name and self.name:
            base += "/" + quote(self.name, safe="")
        return base


def object_ref(kind, name, namespace=None):
    """"Kind namespace/name" (namespaced) or "Kind name" (cluster-scoped)."""
    if namespace:
        return "%s %s/%s" % (kind, namespace, name)
    return "%s %s" % (kind, name)


def ref_of(obj):
    """The "Kind namespace/name" of an object dict."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind")
    namespaced = KINDS.get(kind, (None, None, True))[2]
    return object_ref(kind, meta.get("name"), meta.get("namespace") if namespaced else None)


def _named_target(kind, name, namespace=None, api_version=None):
    return _target_of({"kind": kind, "apiVersion": api_version, "metadata": {"name": name, "namespace": namespace}})


def _target_of(obj):
    if not isinstance(obj, dict) or not obj.get("kind"):
        raise K8sApplyError("object without kind: %r" % (obj,))
    meta = obj.get("metadata") or {}
    target = _Target(obj["kind"], meta.get("name"), meta.get("namespace"), obj.get("apiVersion"))
    if not target.name:
        raise K8sApplyError("%s without metadata.name" % target.kind, ref=target.kind)
    if target.namespaced and not target.namespace:
        raise K8sApplyError("%s: a namespaced object needs metadata.namespace" % target.ref, ref=target.ref)
    return target


# ---------------------------------------------------------------------------------------
# Comparing objects


def canonical_json(obj):
    """The JSON text the hash is taken from: sorted keys, no white space."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def applied_hash(obj):
    """sha256 of the canonical JSON of a desired object (without the hash annotation)."""
    clean = copy.deepcopy(obj)
    annotations = (clean.get("metadata") or {}).get("annotations")
    if annotations and HASH_ANNOTATION in annotations:
        del annotations[HASH_ANNOTATION]
        if not annotations:
            del clean["metadata"]["annotations"]
    return hashlib.sha256(canonical_json(clean).encode("utf-8")).hexdigest()


def desired_object(obj):
    """A copy of obj as the engine applies it: normalised and stamped with the hash annotation.

    Cluster-scoped objects lose metadata.namespace (the server would drop it, and the
    comparison would then never match).
    """
    target = _target_of(obj)
    desired = copy.deepcopy(obj)
    desired["apiVersion"] = target.api_version
    meta = desired.setdefault("metadata", {})
    if not target.namespaced:
        meta.pop("namespace", None)
    annotations = meta.get("annotations") or {}
    annotations.pop(HASH_ANNOTATION, None)
    if not annotations:
        meta.pop("annotations", None)
    digest = applied_hash(desired)
    meta.setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return desired


def _is_empty(value):
    """Values the API server leaves out of what it returns (omitempty)."""
    if value is None or value is False or value == "":
        return True
    if isinstance(value, (dict, list)) and not value:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def is_subset(desired, live):
    """True when live holds every field desired sets, with the same value.

    Dicts compare the desired keys only (server-added defaults are fine); lists compare
    their length and each element as a subset; an empty or zero desired value matches an
    absent live one (the server omits those).
    """
    if isinstance(desired, dict):
        if live is None:
            return all(is_subset(value, None) for value in desired.values())
        if not isinstance(live, dict):
            return False
        return all(is_subset(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if live is None:
            return not desired
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(is_subset(want, have) for want, have in zip(desired, live))
    if live is None:
        return _is_empty(desired)
    if isinstance(desired, bool) != isinstance(live, bool):
        return False
    return desired == live


def is_unchanged(live, desired):
    """True when live carries desired's hash annotation and still holds every desired field."""
    if not live:
        return False
    live_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    want_hash = ((desired.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return bool(want_hash) and live_hash == want_hash and is_subset(desired, live)


def _without_empty(value):
    if isinstance(value, dict):
        return {key: _without_empty(item) for key, item in value.items() if not _is_empty(item)}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


# CSIDriver spec fields the API server refuses to change (the OpenAPI field descriptions of
# 1.25 to 1.37): attachRequired and volumeLifecycleModes always; podInfoOnMount and
# fsGroupPolicy before 1.29. The others (storageCapacity since 1.23, requiresRepublish,
# seLinuxMount, tokenRequests) are mutable.
CSIDRIVER_IMMUTABLE = {"attachRequired": None, "volumeLifecycleModes": None, "podInfoOnMount": (1, 29), "fsGroupPolicy": (1, 29)}


def immutable_changes(kind, live, desired, kubernetes_version=None):
    """Dotted paths of fields the API server will refuse to change from live to desired.

    CSIDriver: the spec fields of CSIDRIVER_IMMUTABLE that desired sets (with
    kubernetes_version, those mutable from that release on are skipped; without it they
    count); StorageClass: provisioner, parameters, reclaimPolicy, volumeBindingMode (an unset
    one counts as the server's default); Deployment and DaemonSet: spec.selector. Empty when
    live is None.
    """
    if not live:
        return []
    changes = []
    if kind == "CSIDriver":
        version = None if kubernetes_version is None else parse_version(kubernetes_version)[:2]
        live_spec = live.get("spec") or {}
        for key in sorted((desired.get("spec") or {})):
            if key not in CSIDRIVER_IMMUTABLE:
                continue
            since = CSIDRIVER_IMMUTABLE[key]
            if since is not None and version is not None and version >= since:
                continue
            if not is_subset(desired["spec"][key], live_spec.get(key)):
                changes.append("spec.%s" % key)
    elif kind == "StorageClass":
        for field, default in STORAGE_CLASS_IMMUTABLE:
            want = desired.get(field, default)
            have = live.get(field, default)
            if _without_empty(want or default) != _without_empty(have or default):
                changes.append(field)
    elif kind in WORKLOAD_KINDS:
        want = _without_empty((desired.get("spec") or {}).get("selector") or {})
        have = _without_empty((live.get("spec") or {}).get("selector") or {})
        if want != have:
            changes.append("spec.selector")
    return changes


def _strip_server_fields(obj, drop_hash=False):
    """A copy without status and the metadata the server sets (and the hash annotation if asked)."""
    if obj is None:
        return None
    clean = copy.deepcopy(obj)
    clean.pop("status", None)
    meta = clean.get("metadata") or {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if drop_hash and annotations is not None:
        annotations.pop(HASH_ANNOTATION, None)
        if not annotations:
            del meta["annotations"]
    return clean


def object_diff(before, after):
    """Ansible's diff dict for one object: before/after as YAML, without server-set fields.

    managedFields, resourceVersion, uid, creationTimestamp, generation, status and the
    hash annotation are left out; an absent object is the empty string.
    """
    def render(obj):
        if obj is None:
            return ""
        clean = _strip_server_fields(obj, drop_hash=True)
        if HAS_YAML:
            return yaml.safe_dump(clean, default_flow_style=False, sort_keys=True)
        return json.dumps(clean, indent=2, sort_keys=True) + "\n"

    ref = ref_of(after if after is not None else before) if (after or before) else ""
    return {"before": render(before), "after": render(after),
            "before_header": ref if before is not None else "%s (absent)" % ref,
            "after_header": ref if after is not None else "%s (absent)" % ref}


def selector_string(selector):
    """A LabelSelector dict (matchLabels, matchExpressions) as a label selector string."""
    parts = ["%s=%s" % (key, value) for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if operator == "In":
            parts.append("%s in (%s)" % (key, ",".join(values)))
        elif operator == "NotIn":
            parts.append("%s notin (%s)" % (key, ",".join(values)))
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts)


def _delete_rank(kind):
    if kind in DELETE_ORDER:
        return DELETE_ORDER.index(kind)
    return len(DELETE_ORDER) + (1 if kind == "Namespace" else 0)


def sorted_for_delete(objects):
    """objects in DELETE_ORDER (unknown kinds after, namespaces last)."""
    return sorted(objects, key=lambda obj: _delete_rank(obj.get("kind")))


def sorted_for_apply(objects):
    """objects in APPLY_ORDER (stable; unknown kinds last)."""
    def rank(obj):
        kind = obj.get("kind")
        return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)
    return sorted(objects, key=rank)


# ---------------------------------------------------------------------------------------
# Connecting


def _env(name):
    value = os.environ.get(_ENV_PREFIX + name.upper())
    return value if value not in (None, "") else None


def _option(params, name, aliases=()):
    """An option's value: the parameter (or an alias), else K8S_AUTH_<NAME> / K8S_AUTH_<ALIAS>."""
    for key in (name,) + tuple(aliases):
        if params.get(key) is not None:
            return params[key]
    for key in (name,) + tuple(aliases):
        value = _env(key)
        if value is None:
            continue
        kind = CONNECTION_ARGS[name].get("type")
        if kind == "bool":
            return value.lower() not in ("0", "false", "no", "off")
        if kind == "list":
            return [item for item in value.split(",") if item]
        return value
    return None


def connection_options(params):
    """The connection options of params with aliases resolved and K8S_AUTH_* fallbacks applied."""
    params = params or {}
    options = {}
    for name, spec in CONNECTION_ARGS.items():
        if name == "proxy_headers":
            continue
        options[name] = _option(params, name, spec.get("aliases", ()))
    headers = params.get("proxy_headers")
    if headers is None:
        headers = {}
        for key in CONNECTION_ARGS["proxy_headers"]["options"]:
            value = _env("proxy_headers_" + key)
            if value is not None:
                headers[key] = value
    options["proxy_headers"] = {key: value for key, value in (headers or {}).items() if value is not None} or None
    for name in ("kubeconfig", "ca_cert", "client_cert", "client_key"):
        if options[name]:
            options[name] = os.path.expanduser(options[name])
    return options


def _default_kubeconfig():
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def _kubeconfig_exists(path):
    return any(os.path.exists(os.path.expanduser(item)) for item in path.split(os.pathsep) if item)


def _load_kubeconfig(configuration, path, context, persist, explicit):
    """Load a kubeconfig file into configuration; K8sApplyError naming the path otherwise."""
    if not _kubeconfig_exists(path):
        if explicit:
            raise K8sApplyError("kubeconfig file %s does not exist; set the kubeconfig option (or K8S_AUTH_KUBECONFIG) to an existing file"
                                % path, ref="kubeconfig")
        raise K8sApplyError("no API server to talk to: not running in a pod (no in-cluster config) and the default kubeconfig %s "
                            "does not exist; set the kubeconfig option (or K8S_AUTH_KUBECONFIG), or host with api_key or "
                            "client_cert/client_key" % path, ref="kubeconfig")
    try:
        kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                           persist_config=bool(persist))
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        hint = " (context %s)" % context if context else ""
        raise K8sApplyError("kubeconfig %s%s cannot be used: %s" % (path, hint, exc), ref="kubeconfig")


def connect(params):
    """A kubernetes.client.ApiClient for the connection options in params (CONNECTION_ARGS names).

    Like kubernetes.core: host with api_key, username/password or client_cert/client_key is
    enough on its own; else the kubeconfig file (default ~/.kube/config or $KUBECONFIG) with
    context when kubeconfig or context is set; else the in-cluster service account, falling
    back to the default kubeconfig. Explicit options then override what was loaded.
    """
    if not HAS_KUBERNETES:
        raise K8sApplyError("the kubernetes Python library is not installed (pip install kubernetes): %s"
                            % KUBERNETES_IMPORT_ERROR)
    opts = connection_options(params)
    configuration = kubernetes.client.Configuration()
    explicit = opts["host"] and (opts["api_key"] or (opts["username"] and opts["password"])
                                 or (opts["client_cert"] and opts["client_key"]))
    if explicit:
        pass
    elif opts["kubeconfig"] or opts["context"]:
        path = opts["kubeconfig"] or _default_kubeconfig()
        _load_kubeconfig(configuration, path, opts["context"], opts["persist_config"], explicit=bool(opts["kubeconfig"]))
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            _load_kubeconfig(configuration, _default_kubeconfig(), None, opts["persist_config"], explicit=False)
    _override(configuration, opts)
    # The Applier retries by its own rules (and counts every request): no hidden urllib3 retries.
    configuration.retries = False
    client = kubernetes.client.ApiClient(configuration)
    if opts["impersonate_user"]:
        client.set_default_header("Impersonate-User", opts["impersonate_user"])
    if opts["impersonate_groups"]:
        # A list value is sent as one Impersonate-Group header per group (see Applier._headers).
        client.default_headers["Impersonate-Group"] = list(opts["impersonate_groups"])
    return client


def _override(configuration, opts):
    """Apply the explicit options on top of what a kubeconfig or the in-cluster config set."""
    if opts["host"]:
        configuration.host = opts["host"].rstrip("/")
    if opts["api_key"]:
        configuration.api_key = {"authorization": "Bearer %s" % opts["api_key"]}
    elif opts["username"] and opts["password"]:
        basic = urllib3.util.make_headers(basic_auth="%s:%s" % (opts["username"], opts["password"]))
        configuration.api_key = {"authorization": basic["authorization"]}
    if opts["username"]:
        configuration.username = opts["username"]
    if opts["password"]:
        configuration.password = opts["password"]
    if opts["validate_certs"] is not None:
        configuration.verify_ssl = opts["validate_certs"]
    for option, attribute in (("ca_cert", "ssl_ca_cert"), ("client_cert", "cert_file"), ("client_key", "key_file")):
        if opts[option]:
            if not os.path.exists(opts[option]):
                raise K8sApplyError("%s file %s does not exist" % (option, opts[option]), ref=option)
            setattr(configuration, attribute, opts[option])
    if opts["proxy"]:
        configuration.proxy = opts["proxy"]
    if opts["no_proxy"]:
        configuration.no_proxy = opts["no_proxy"]
    if opts["proxy_headers"]:
        configuration.proxy_headers = urllib3.util.make_headers(**opts["proxy_headers"])


# ---------------------------------------------------------------------------------------
# Error messages


def _http_error(failure, target, verb, retried=False):
    """A K8sApplyError for failure while doing verb on target (None: a request about no object, e.g. GET /version)."""
    ref = "API server" if target is None else target.ref if target.name else "%s (%s)" % (target.kind, verb)
    head = "%s: %s failed" % (ref, verb)
    if failure.status is None and failure.tls:
        return K8sApplyError("%s: TLS error talking to the API server: %s; check ca_cert and validate_certs (or the kubeconfig's "
                             "certificate-authority and client certificate)" % (head, failure.error), ref=ref)
    if failure.status is None:
        return K8sApplyError("%s: cannot reach the API server: %s; gave up after %d attempt(s); check host/kubeconfig and the network"
                             % (head, failure.error, failure.attempts), ref=ref)
    head = "%s: HTTP %s %s" % (head, failure.status, failure.reason or "")
    if failure.status == 404 and not failure.object_missing and target is not None:
        return K8sApplyError("%s: %s" % (head, _api_missing_text(target)), ref=ref, status=404, reason=failure.reason, api_missing=True)
    if failure.status == 422:
        causes = ((failure.status_object or {}).get("details") or {}).get("causes") or []
        texts = ["%s: %s" % (cause["field"], cause.get("message")) if cause.get("field") else cause.get("message", "") for cause in causes]
        fix = "the server rejected the object: %s" % ("; ".join(texts) or "invalid")
        if "immutable" in failure.message or "forbidden" in failure.message.lower():
            fix += "; the field cannot be changed in place: set recreate: true to delete and recreate it"
        return K8sApplyError("%s: %s (server: %s)" % (head, fix, failure.message), ref=ref, status=422, reason=failure.reason, causes=texts)
    text = "%s: %s" % (head, _fix_text(failure, target, verb, retried))
    if failure.message:
        text += " (server: %s)" % failure.message
    return K8sApplyError(text, ref=ref, status=failure.status, reason=failure.reason)


def _api_missing_text(target):
    text = "the server does not serve %s; Kubernetes too old or API disabled" % target.api_version
    since = MIN_SERVER_VERSION.get((target.kind, target.api_version))
    if since:
        text += " (%s %s needs Kubernetes >= %s)" % (target.kind, target.api_version, since)
    return text


def _fix_text(failure, target, verb, retried):
    """The cause and the fix for an HTTP failure other than an unserved API or a 422."""
    status = failure.status
    if status == 401:
        return "the API server did not accept the credentials; check api_key, client_cert/client_key or username/password, " \
               "or the kubeconfig and its context (an expired token?)"
    if status == 403:
        if target is None:
            what = verb
        else:
            scope = "in namespace %s" % target.namespace if target.namespaced and target.namespace else "cluster-wide"
            what = "%s %s (%s)" % (verb, target.resource, scope)
        return "the identity lacks RBAC permission to %s; grant it with a (Cluster)Role and binding, " \
               "or use a kubeconfig/context with more rights" % what
    if status == 404:
        details = (failure.status_object or {}).get("details") or {}
        if details.get("kind") == "namespaces":
            return "namespace %s does not exist; create it first (a Namespace object before the objects in it)" % details.get("name")
        return "not found"
    if status == 409:
        text = "conflict: another writer changed the object at the same time, or it already exists"
        if retried:
            text += " (retried %d time(s))" % (failure.attempts - 1)
        return text
    if status in RETRY_STATUSES:
        return "the API server kept failing; gave up after %d attempt(s)" % failure.attempts
    return "unexpected answer"


# ---------------------------------------------------------------------------------------
# The engine


class Applier:
    """Applies objects to the cluster behind api_client (see the module docstring).

    check_mode: every write is sent with dryRun=All (nothing is stored) and the predicted
    action is reported. retries: how often a 409 on apply, a 429, a 5xx, a connection error
    or a timeout is retried, waiting retry_delay, then twice as long, and so on.
    request_timeout: the client's (connect, read) timeout of each request, in seconds;
    delete_timeout: how long recreate waits for a deleted object to be gone.

    requests counts the HTTP requests sent, per method ({"GET": n, "PATCH": n, ...});
    request_count, reads (GET) and writes (everything else, dry runs included) sum them.
    """

    def __init__(self, api_client, field_manager=FIELD_MANAGER, check_mode=False, retries=3, retry_delay=1.0,
                 request_timeout=(10.0, 60.0), delete_timeout=120.0, sleep=time.sleep, clock=time.monotonic,
                 kubernetes_version=None):
        self.api = api_client
        # The server's version ("1.33"): which CSIDriver fields are immutable depends on it.
        self.kubernetes_version = kubernetes_version
        self.field_manager = field_manager
        self.check_mode = check_mode
        self.retries = max(0, int(retries))
        self.retry_delay = retry_delay
        self.request_timeout = request_timeout
        self.delete_timeout = delete_timeout
        self._sleep = sleep
        self._clock = clock
        self.requests = {}
        self._dry_run_namespaces = set()
        # kubernetes < 33 raises for non-2xx answers and needs _preload_content=False for raw bodies.
        try:
            self._old_rest = "_preload_content" in inspect.signature(api_client.rest_client.request).parameters
        except (TypeError, ValueError):
            self._old_rest = False

    # -- counting ---------------------------------------------------------------------

    @property
    def request_count(self):
        """HTTP requests issued so far (retries included)."""
        return sum(self.requests.values())

    @property
    def reads(self):
        """GET requests issued so far."""
        return self.requests.get("GET", 0)

    @property
    def writes(self):
        """Other requests issued so far (PATCH, POST, DELETE; dry runs included)."""
        return self.request_count - self.reads

    def reset_counts(self):
        self.requests = {}

    # -- HTTP -------------------------------------------------------------------------

    def _headers(self, content_type=None):
        headers = HTTPHeaderDict()
        for name, value in (self.api.default_headers or {}).items():
            if isinstance(value, (list, tuple)):
                for item in value:
                    headers.add(name, item)
            else:
                headers[name] = value
        headers["Accept"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        token = self._auth_header()
        if token:
            headers["Authorization"] = token
        return headers

    def _auth_header(self):
        configuration = self.api.configuration
        hook = getattr(configuration, "refresh_api_key_hook", None)
        if hook is not None:
            hook(configuration)
        keys = configuration.api_key or {}
        prefixes = getattr(configuration, "api_key_prefix", None) or {}
        for identifier in ("BearerToken", "authorization"):
            token = keys.get(identifier)
            if token:
                prefix = prefixes.get(identifier)
                return "%s %s" % (prefix, token) if prefix else token
        if configuration.username or configuration.password:
            return urllib3.util.make_headers(basic_auth="%s:%s" % (configuration.username or "", configuration.password or ""))[
                "authorization"]
        return None

    def _send(self, method, url, body, content_type):
        """One HTTP request: (status, reason, body bytes). Transport errors raise."""
        self.requests[method] = self.requests.get(method, 0) + 1
        kwargs = {"headers": self._headers(content_type), "body": body, "_request_timeout": self.request_timeout}
        if self._old_rest:
            kwargs["_preload_content"] = False
        try:
            response = self.api.rest_client.request(method, url, **kwargs)
        except ApiException as exc:  # TLS errors; older clients also raise for non-2xx answers
            if not exc.status:
                raise _HttpFailure(None, None, None, 1, error=exc.reason, tls="SSL" in str(exc.reason))
            data = exc.body if isinstance(exc.body, (bytes, str)) else b""
            return exc.status, exc.reason, data
        return response.status, response.reason, response.read()

    def _request(self, method, path, query=None, body=None, content_type=None, retry_conflict=False):
        """Send a request with retries; the decoded JSON answer, or _HttpFailure."""
        url = self.api.configuration.host.rstrip("/") + path
        query = [(key, value) for key, value in (query or []) if value is not None]
        if query:
            url += "?" + urlencode(query)
        if body is not None and content_type is None:
            content_type = "application/json"
        attempt = 0
        while True:
            attempt += 1
            failure = None
            try:
                status, reason, data = self._send(method, url, body, content_type)
            except _HttpFailure as exc:
                failure = exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                tls = isinstance(exc, urllib3.exceptions.SSLError) or "SSL" in str(exc)
                failure = _HttpFailure(None, None, None, attempt, error="%s: %s" % (type(exc).__name__, exc), tls=tls)
            else:
                payload = _decode(data)
                if 200 <= status < 300:
                    return payload
                failure = _HttpFailure(status, reason, payload, attempt)
            failure.attempts = attempt
            retryable = failure.retryable or (retry_conflict and failure.status == 409)
            if not retryable or attempt > self.retries:
                raise failure
            self._sleep(self.retry_delay * (2 ** (attempt - 1)))

    def _query(self, dry_run=None):
        """The common query parameters: dryRun=All in check mode."""
        if dry_run is None:
            dry_run = self.check_mode
        return [("dryRun", "All")] if dry_run else []

    # -- reading ----------------------------------------------------------------------

    def server_version(self):
        """The server's "major.minor" (e.g. "1.33") from GET /version."""
        try:
            info = self._request("GET", "/version")
        except _HttpFailure as failure:
            raise _http_error(failure, None, "get /version")
        major = re.sub(r"\D", "", str(info.get("major", "")))
        minor = re.sub(r"\D", "", str(info.get("minor", "")))
        if not (major and minor):
            match = re.match(r"v?(\d+)\.(\d+)", str(info.get("gitVersion", "")))
            if not match:
                raise K8sApplyError("GET /version: cannot tell the server version from %r" % (info,), ref="version")
            major, minor = match.groups()
        return "%s.%s" % (major, minor)

    def get(self, kind, name, namespace=None, api_version=None):
        """The live object, or None when it does not exist."""
        return self._get(_named_target(kind, name, namespace, api_version))

    def _get(self, target):
        try:
            return self._request("GET", target.path())
        except _HttpFailure as failure:
            if failure.object_missing:
                return None
            raise _http_error(failure, target, "get")

    def list_managed(self, kinds, label_selector, namespace=None):
        """The live objects of kinds matching label_selector (one LIST per kind).

        Namespaced kinds are listed in namespace (all namespaces when it is None),
        cluster-scoped kinds cluster-wide. Each item gets its kind and apiVersion back.
        """
        found = []
        for kind in kinds:
            target = _Target(kind, None, namespace)
            try:
                answer = self._request("GET", target.path(with_name=False), [("labelSelector", label_selector or None)])
            except _HttpFailure as failure:
                raise _http_error(failure, target, "list")
            for item in answer.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", target.api_version)
                found.append(item)
        return found

    # -- writing ----------------------------------------------------------------------

    def apply(self, obj, recreate=False, live=_NOT_READ):
        """Make obj's fields true in the cluster; see the module docstring.

        Returns {"action": created|updated|unchanged|recreated, "before", "after", "ref"}.
        An immutable field that would change raises K8sApplyError unless recreate is set.
        live: the object as just read with get() (None: it does not exist), to save a request.
        """
        desired = desired_object(obj)
        target = _target_of(desired)
        if live is _NOT_READ:
            live = self._get(target)
        if is_unchanged(live, desired):
            return _result("unchanged", live, live, target)
        changes = immutable_changes(target.kind, live, desired, self.kubernetes_version)
        if changes:
            if not recreate:
                raise K8sApplyError("%s: cannot change immutable field(s) %s in place (the API server forbids updates to them); "
                                    "set recreate: true to delete and recreate it" % (target.ref, ", ".join(changes)),
                                    ref=target.ref, status=None, causes=changes)
            return self._recreate(target, live, desired)
        if self.check_mode and live is None and target.namespace in self._dry_run_namespaces:
            # Its namespace is created in this run: a dry run into it would get 404.
            return _result("created", None, desired, target)
        after = self._server_side_apply(target, desired)
        if live is None:
            if self.check_mode and target.kind == "Namespace":
                self._dry_run_namespaces.add(target.name)
            return _result("created", None, after, target)
        action = "unchanged" if _strip_server_fields(live) == _strip_server_fields(after) else "updated"
        return _result(action, live, after, target)

    def _server_side_apply(self, target, desired):
        """PATCH application/apply-patch+yaml of desired.

        force=true: the collection owns these objects, so fields another writer changed are
        taken back (their managers lose them) instead of failing with a 409 conflict.
        """
        query = [("fieldManager", self.field_manager), ("force", "true")] + self._query()
        try:
            return self._request("PATCH", target.path(), query, canonical_json(desired), "application/apply-patch+yaml",
                                 retry_conflict=True)
        except _HttpFailure as failure:
            raise _http_error(failure, target, "patch", retried=True)

    def _recreate(self, target, live, desired):
        """Delete live and create desired; in check mode a dry-run delete and a dry-run create."""
        propagation = "Foreground" if target.kind in WORKLOAD_KINDS else "Background"
        if self.check_mode:
            self._delete(target, propagation)
            after = self._dry_run_create(target, desired)
            return _result("recreated", live, after, target)
        self._delete(target, propagation)
        self._wait_gone(target, live)
        after = self._server_side_apply(target, desired)
        return _result("recreated", live, after, target)

    def _dry_run_create(self, target, desired):
        """POST with dryRun=All, under metadata.generateName (the name is still taken by the live object)."""
        body = copy.deepcopy(desired)
        body["metadata"].pop("name", None)
        body["metadata"]["generateName"] = target.name + "-"
        try:
            after = self._request("POST", target.path(with_name=False), [("fieldManager", self.field_manager)] + self._query(True), body)
        except _HttpFailure as failure:
            raise _http_error(failure, target, "create")
        after.setdefault("metadata", {})["name"] = target.name
        after["metadata"].pop("generateName", None)
        return after

    def _wait_gone(self, target, live):
        """Poll until the object (that uid) is gone: foreground deletion waits for its pods."""
        uid = (live.get("metadata") or {}).get("uid")
        deadline = self._clock() + self.delete_timeout
        while True:
            current = self._get(target)
            if current is None or (uid and (current.get("metadata") or {}).get("uid") != uid):
                return
            if self._clock() >= deadline:
                raise K8sApplyError("%s: still being deleted after %ss (finalizers: %s); cannot recreate it yet"
                                    % (target.ref, self.delete_timeout, (current.get("metadata") or {}).get("finalizers")),
                                    ref=target.ref)
            self._sleep(min(1.0, max(self.delete_timeout / 100.0, 0.05)))

    def delete(self, kind, name, namespace=None, propagation="Background", api_version=None):
        """Delete an object; False when it was already gone. Check mode: dryRun=All."""
        return self._delete(_named_target(kind, name, namespace, api_version), propagation)

    def _delete(self, target, propagation):
        query = [("propagationPolicy", propagation)] + self._query()
        try:
            self._request("DELETE", target.path(), query)
        except _HttpFailure as failure:
            if failure.object_missing:
                return False
            raise _http_error(failure, target, "delete")
        return True

    def merge_patch(self, kind, name, patch, namespace=None, api_version=None):
        """JSON merge patch (application/merge-patch+json) of an object this collection does not own."""
        target = _named_target(kind, name, namespace, api_version)
        try:
            return self._request("PATCH", target.path(), self._query(), patch, "application/merge-patch+json")
        except _HttpFailure as failure:
            raise _http_error(failure, target, "patch")

    def prune(self, desired_objects, kinds, label_selector, namespace):
        """Delete the live objects of kinds matching label_selector that are not desired.

        Removal goes in DELETE_ORDER (workloads first); returns the refs deleted (in check
        mode: that would be deleted).
        """
        keep = set()
        for obj in desired_objects:
            target = _target_of(obj)
            keep.add((target.kind, target.namespace, target.name))
        stale = []
        for live in self.list_managed(kinds, label_selector, namespace):
            meta = live.get("metadata") or {}
            target = _Target(live["kind"], meta.get("name"), meta.get("namespace"), live.get("apiVersion"))
            if (target.kind, target.namespace, target.name) not in keep and not meta.get("deletionTimestamp"):
                stale.append(target)
        stale.sort(key=lambda item: _delete_rank(item.kind))
        deleted = []
        for target in stale:
            if self._delete(target, "Background"):
                deleted.append(target.ref)
        return deleted

    # -- waiting ----------------------------------------------------------------------

    def wait_ready(self, objects, timeout, interval=2.0):
        """Wait until the Deployments and DaemonSets among objects are rolled out and ready.

        A no-op in check mode. On timeout, K8sApplyError lists the workloads not ready and
        their pods that are not ready, with the containers' waiting reasons.
        """
        if self.check_mode:
            return
        pending = [_target_of(obj) for obj in objects if obj.get("kind") in WORKLOAD_KINDS]
        deadline = self._clock() + timeout
        last = {}
        while True:
            still = []
            for target in pending:
                live = self._get(target)
                last[target.ref] = live
                if live is None or not workload_ready(live):
                    still.append(target)
            pending = still
            if not pending:
                return
            if self._clock() >= deadline:
                raise K8sApplyError(self._not_ready_message(pending, last, timeout), ref=pending[0].ref)
            self._sleep(max(0.0, min(interval, deadline - self._clock())))

    def _not_ready_message(self, pending, last, timeout):
        parts = []
        for target in pending:
            live = last.get(target.ref)
            if live is None:
                parts.append("%s: does not exist" % target.ref)
                continue
            text = "%s: %s" % (target.ref, workload_progress(live))
            pods = self._pod_problems(target, live)
            if pods:
                text += "; pods not ready: " + "; ".join(pods)
            parts.append(text)
        return "timed out after %ss waiting for %d workload(s) to be ready: %s" % (timeout, len(pending), " | ".join(parts))

    def _pod_problems(self, target, live):
        selector = (live.get("spec") or {}).get("selector") or {}
        if not selector:
            return []
        pod_target = _Target("Pod", None, target.namespace)
        try:
            answer = self._request("GET", pod_target.path(with_name=False), [("labelSelector", selector_string(selector))])
        except _HttpFailure:
            return ["(could not list the pods)"]
        return [pod_problem(pod) for pod in answer.get("items") or [] if not pod_ready(pod)]


def _decode(data):
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return data


def _result(action, before, after, target):
    return {"action": action, "before": before, "after": after, "ref": target.ref}


# ---------------------------------------------------------------------------------------
# Readiness


def workload_ready(live):
    """Deployment: observedGeneration current, updated == available == replicas (and no old pods);
    DaemonSet: observedGeneration current, updatedNumberScheduled == numberReady == desiredNumberScheduled."""
    status = live.get("status") or {}
    generation = (live.get("metadata") or {}).get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return False
    if live.get("kind") == "DaemonSet":
        desired = status.get("desiredNumberScheduled")
        if desired is None:
            return False
        return status.get("updatedNumberScheduled", 0) == desired and status.get("numberReady", 0) == desired
    replicas = (live.get("spec") or {}).get("replicas", 1)
    return (status.get("updatedReplicas", 0) == replicas and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas)


def workload_progress(live):
    """A short text of a workload's rollout status."""
    status = live.get("status") or {}
    generation = (live.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or 0
    if live.get("kind") == "DaemonSet":
        text = "%s/%s updated, %s/%s ready" % (status.get("updatedNumberScheduled", 0), status.get("desiredNumberScheduled", "?"),
                                               status.get("numberReady", 0), status.get("desiredNumberScheduled", "?"))
    else:
        replicas = (live.get("spec") or {}).get("replicas", 1)
        text = "%s/%s updated, %s/%s available" % (status.get("updatedReplicas", 0), replicas, status.get("availableReplicas", 0), replicas)
    if observed < generation:
        text += ", generation %s not yet observed (observedGeneration %s)" % (generation, observed)
    return text


def pod_ready(pod):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def pod_problem(pod):
    """"name (phase; container c: Reason: message)" for a pod that is not ready."""
    status = pod.get("status") or {}
    reasons = []
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            detail = state.get(key)
            if detail and detail.get("reason"):
                text = "container %s: %s" % (container.get("name"), detail["reason"])
                if detail.get("message"):
                    text += ": %s" % detail["message"]
                reasons.append(text)
    if not reasons:
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True" and (condition.get("reason") or condition.get("message")):
                reasons.append("%s: %s" % (condition.get("type"), condition.get("message") or condition.get("reason")))
    detail = "; ".join([status.get("phase") or "Unknown"] + reasons)
    return "%s (%s)" % ((pod.get("metadata") or {}).get("name"), detail)


# ---------------------------------------------------------------------------------------
# Default StorageClass


def set_default_storage_class(applier, name):
    """Remove the default-class annotation from every StorageClass but name; returns their names.

    A JSON merge patch, not server-side apply: those classes are not the collection's, and
    an apply would make this field manager an owner of them. Check mode: dryRun=All.
    """
    changed = []
    for live in applier.list_managed(["StorageClass"], None):
        other = (live.get("metadata") or {}).get("name")
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        keys = [key for key in (DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION) if key in annotations]
        if other == name or not any(str(annotations[key]).lower() == "true" for key in keys):
            continue
        applier.merge_patch("StorageClass", other, {"metadata": {"annotations": {key: None for key in keys}}})
        changed.append(other)
    return changed
