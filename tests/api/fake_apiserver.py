# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake Kubernetes API server over real HTTP (127.0.0.1, random port) for the engine's tests.

The real `kubernetes` client talks to it like to a cluster. It is built on kmock's
KubernetesEmulator, which provides the aiohttp server, the object store (kmock.ObjectsArray,
with every version of every object kept: `server.store`), the discovery endpoints (/api,
/apis, /apis/<group>/<version>, from the resources declared for the served groups) and
/version (its payload is `server.version_info`). The event loop runs in a background thread,
so synchronous code (the kubernetes client, the engine) can call it.

Resource paths (/api/v1/..., /apis/<group>/<version>/...) are served by this module instead
of kmock's handlers, for two reasons: kmock's path parser fails on `/api/v1/namespaces`
(the namespaces collection) and reads `/api/v1/namespaces/<name>` as a namespace with no
resource, and its writes are plain dict merges without the API server's metadata,
server-side apply, dry runs, label selectors or validation.
What this module adds:

- /version with a configurable gitVersion (FakeApiServer(git_version=...), version_info);
- GET (object, LIST with labelSelector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
  `a notin (x)`, comma-joined), POST (generateName too), PUT (resourceVersion checked),
  DELETE, PATCH with application/apply-patch+yaml (server-side apply: creates a missing
  object; otherwise merges the applied config into the live object: dicts recursively,
  lists replaced, and fields the same field manager applied before but no longer sends are
  removed; the last applied config per manager is kept, see applied_config(); without
  force=true a field another manager owns with a different value is a 409 conflict),
  application/merge-patch+json (RFC 7386), application/json-patch+json (RFC 6902) and
  application/strategic-merge-patch+json (handled as a JSON merge patch);
- the /status subresource (GET, PUT, merge PATCH) of Deployments, DaemonSets and Pods;
- dryRun=All on POST/PUT/PATCH/DELETE: the answer is what would be stored, nothing is;
- the metadata the real server sets: uid, creationTimestamp, resourceVersion (one counter
  for the whole server, increased on every change; a no-op write changes nothing),
  generation (1, then +1 when anything outside metadata and status changes), managedFields
  (manager, operation, apiVersion, time, fieldsV1);
- validation: immutable fields answer 422 Invalid with the real server's message shape
  (StorageClass provisioner/parameters/reclaimPolicy/volumeBindingMode
  "Forbidden: updates to parameters are forbidden.", every CSIDriver spec field and the
  Deployment/DaemonSet spec.selector "field is immutable"), a workload selector that does
  not match its template labels, a missing name; 409 AlreadyExists on POST of an existing
  object; 404 NotFound (a Status) for a missing object or namespace (namespaced objects
  need their Namespace; default, kube-system, kube-public and kube-node-lease exist);
- API groups/versions: `served_groups` (e.g. without "storage.k8s.io/v1") makes paths of the
  others answer like a real server does for an unknown path: 404 with the text body
  "404 page not found" (not a Status);
- a bearer token check (FakeApiServer(token=...)): a missing or wrong token gets 401;
- a controller stand-in: after each write of a Deployment or DaemonSet it writes the
  status: `workloads="ready"` (observedGeneration, replicas, updated/ready/available, or
  desired/updated/ready/available numbers scheduled on `node_count` nodes) or "never"
  (generation observed, nothing ready); per object with set_readiness(); with
  create_pods=True it also replaces the workload's Pods (labels from the template,
  ownerReferences, Running/Ready, or Pending with each container waiting for
  `pod_waiting_reason`); deleting a workload deletes its Pods;
- error injection: inject(method, path_regex, status, times=n, body=None, delay=0) answers
  the next n matching requests with that status (a Status body like the real server's for
  401/403/404/409/422/429/5xx unless body is given); delay holds the answer back (a delay
  with status None then serves the request normally: a slow server, for client timeouts);
- a request log: `requests` ((method, path, query) tuples; `request_headers` has each
  request's header pairs), and the counts of reads (GET/HEAD), writes (POST/PUT/PATCH/DELETE
  without dryRun) and dry-run writes.

Deliberately not supported: watch, fieldSelector (ignored), pagination (limit/continue),
strategic merge keys (lists are replaced), graceful deletion and finalizers (DELETE removes
at once, foreground or not), garbage collection other than a workload's Pods and a
namespace's objects, admission, RBAC (403 only by injection), defaulting, schema
validation, and subresources other than status.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import hashlib
import json
import re
import secrets
import threading
import uuid
from http import HTTPStatus
from urllib.parse import unquote

import aiohttp.web
import jsonpatch
import kmock
import kubernetes.client
import yaml

# (group, version, plural) -> (kind, namespaced, has a status subresource)
RESOURCES = {
    ("", "v1", "namespaces"): ("Namespace", False, True),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, False),
    ("", "v1", "configmaps"): ("ConfigMap", True, False),
    ("", "v1", "pods"): ("Pod", True, True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False, False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ("ClusterRoleBinding", False, False),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", True, False),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", True, False),
    ("storage.k8s.io", "v1", "csidrivers"): ("CSIDriver", False, False),
    ("storage.k8s.io", "v1", "storageclasses"): ("StorageClass", False, False),
    ("apps", "v1", "deployments"): ("Deployment", True, True),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True, True),
}
ALL_GROUP_VERSIONS = frozenset(("%s/%s" % (group, version)).lstrip("/") for group, version, _plural in RESOURCES)
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
SYSTEM_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp", "selfLink")
STORAGE_CLASS_IMMUTABLE = ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode")

LoggedRequest = collections.namedtuple("LoggedRequest", "method path query")
ApiPath = collections.namedtuple("ApiPath", "group version plural namespace name subresource")


class ApiError(Exception):
    """An answer other than 2xx: an HTTP status and a Status object (or a text body)."""

    def __init__(self, code, reason, message, details=None, text=None):
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.text = text
        super().__init__("%s %s: %s" % (code, reason, message))

    def payload(self):
        if self.text is not None:
            return self.text
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code, reason, message, details=None):
    """A metav1.Status for a failure."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
              "reason": reason, "code": code}
    if details:
        status["details"] = details
    return status


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_api_path(path):
    """An ApiPath for a resource path, None for anything else (discovery, /version, ...)."""
    parts = [unquote(part) for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    namespace_subresource = len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return ApiPath(group, version, rest[0], namespace, name, subresource)


# ---------------------------------------------------------------------------------------
# Label selectors


def _split_terms(text):
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def parse_selector(text):
    """[(key, op, values)] for a label selector; ValueError when it cannot be parsed."""
    requirements = []
    for term in _split_terms(text or ""):
        match = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term)
        if match:
            values = {value.strip() for value in match.group(3).split(",") if value.strip()}
            requirements.append((match.group(1), match.group(2), values))
            continue
        match = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$", term)
        if match:
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), operator, {match.group(3)}))
            continue
        match = re.match(r"^(!?)([\w./-]+)$", term)
        if not match:
            raise ValueError("unable to parse requirement: %r" % term)
        requirements.append((match.group(2), "!" if match.group(1) else "exists", set()))
    return requirements


def selector_matches(requirements, labels):
    labels = labels or {}
    for key, operator, values in requirements:
        present = key in labels
        if operator == "exists" and not present:
            return False
        if operator == "!" and present:
            return False
        if operator in ("=", "in") and (not present or labels[key] not in values):
            return False
        if operator in ("!=", "notin") and present and labels[key] in values:
            return False
    return True


# ---------------------------------------------------------------------------------------
# Field paths and merging


def leaf_paths(obj, prefix=()):
    """The paths of the leaves of a dict (lists and empty dicts are leaves)."""
    paths = set()
    for key, value in obj.items():
        path = prefix + (key,)
        if isinstance(value, dict) and value:
            paths |= leaf_paths(value, path)
        else:
            paths.add(path)
    return paths


def tracked_paths(obj):
    """The leaf paths that field managers own (not apiVersion/kind/name/status/server metadata)."""
    def tracked(path):
        if path[0] in ("apiVersion", "kind", "status"):
            return False
        return not (path[0] == "metadata" and len(path) > 1 and path[1] in ("name", "namespace", "generateName") + SYSTEM_METADATA)
    return {path for path in leaf_paths(obj) if tracked(path)}


_MISSING = object()


def get_path(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def delete_path(obj, path):
    """Remove path from obj, then the dicts it leaves empty (below the top level)."""
    parents = []
    node = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents[1:]):
        if parent[key] == {}:
            del parent[key]


def merge_applied(live, config):
    """live with config merged in: dicts recursively, lists and scalars replaced."""
    result = copy.deepcopy(live)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_applied(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def fields_v1(paths):
    """managedFields' fieldsV1 tree for a set of leaf paths."""
    tree = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault("f:%s" % key, {})
    return tree


def go_value(value):
    """A value as the API server prints it in a field error (near enough)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value
    if value is None or value is _MISSING:
        return "null"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# The cluster state


class _Injection:
    def __init__(self, method, path_regex, status, times, body, delay):
        self.method = method.upper()
        self.pattern = re.compile(path_regex)
        self.status = status
        self.remaining = times
        self.body = body
        self.delay = delay
        self.hits = 0

    def matches(self, method, path):
        return self.remaining > 0 and self.method in ("*", method) and self.pattern.search(path) is not None


class FakeApiServer:
    """The fake API server; start() it (or use it as a context manager), then use .url."""

    def __init__(self, git_version="v1.33.1", served_groups=None, workloads="ready", create_pods=False, node_count=1,
                 pod_waiting_reason="ImagePullBackOff", token=None, user="system:serviceaccount:default:deployer"):
        if workloads not in ("ready", "never"):
            raise ValueError("workloads: ready or never, not %r" % (workloads,))
        match = re.match(r"v?(\d+)\.(\d+)", git_version)
        self.version_info = {"major": match.group(1), "minor": match.group(2), "gitVersion": git_version,
                             "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                             "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64"}
        self.served_groups = frozenset(served_groups) if served_groups is not None else ALL_GROUP_VERSIONS
        self.workloads = workloads
        self.create_pods = create_pods
        self.node_count = node_count
        self.pod_waiting_reason = pod_waiting_reason
        self.token = token
        self.user = user
        self.store = kmock.ObjectsArray()
        self.requests = []
        self.request_headers = []
        self._lock = threading.RLock()
        self._rv = 0
        self._owners = {}
        self._applied = {}
        self._readiness = {}
        self._injections = []
        self._clients = []
        self._loop = None
        self._thread = None
        self._handler = None
        self._server = None
        for name in BUILTIN_NAMESPACES:
            self.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, manager="kube-apiserver")

    # -- lifecycle --------------------------------------------------------------------

    def start(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-apiserver", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(timeout=30)
        return self

    async def _astart(self):
        self._handler = _Handler()
        self._handler.fake = self
        self._handler._objects = self.store
        for (group, version, plural), (kind, namespaced, status) in RESOURCES.items():
            if ("%s/%s" % (group, version)).lstrip("/") in self.served_groups:
                self._handler.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                    kind=kind, namespaced=namespaced, subresources={"status"} if status else set(),
                    verbs={"get", "list", "create", "update", "patch", "delete"})
        await self._handler.__aenter__()
        self._server = kmock.Server(self._handler)
        await self._server.__aenter__()

    async def _astop(self):
        await self._server.__aexit__(None, None, None)
        await self._handler.__aexit__(None, None, None)

    def stop(self):
        for client in self._clients:
            client.close()
        self._clients = []
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._astop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        return str(self._server.url).rstrip("/")

    # -- helpers for tests ------------------------------------------------------------

    def api_client(self, token=None):
        """A kubernetes ApiClient for this server (closed by stop())."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.retries = False
        token = token or self.token
        if token:
            configuration.api_key = {"authorization": "Bearer %s" % token}
        client = kubernetes.client.ApiClient(configuration)
        self._clients.append(client)
        return client

    def write_kubeconfig(self, path, context="fake", token=None, namespace=None):
        """Write a kubeconfig file for this server (user token: token or the server's) and return its path."""
        ctx = {"cluster": "fake", "user": "fake"}
        if namespace:
            ctx["namespace"] = namespace
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context, "preferences": {},
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "contexts": [{"name": context, "context": ctx}],
            "users": [{"name": "fake", "user": {"token": token or self.token or "fake-token"}}],
        }
        with open(path, "w") as handle:
            yaml.safe_dump(config, handle)
        return str(path)

    def inject(self, method, path_regex, status, times=1, body=None, delay=0.0):
        """Answer the next `times` requests of method (or "*") whose path matches path_regex with status."""
        injection = _Injection(method, path_regex, status, times, body, delay)
        with self._lock:
            self._injections.append(injection)
        return injection

    def clear_injections(self):
        """Forget injected failures that have not been used up."""
        with self._lock:
            self._injections = []

    def fingerprint(self):
        """sha256 of every stored object (all kinds, sorted): equal before and after means nothing changed."""
        digest = hashlib.sha256()
        with self._lock:
            for kind, _namespaced, _status in sorted(set(RESOURCES.values())):
                for obj in self.list(kind):
                    digest.update(json.dumps(obj, sort_keys=True).encode("utf-8"))
        return digest.hexdigest()

    def clear_log(self):
        with self._lock:
            self.requests = []
            self.request_headers = []

    @property
    def reads(self):
        return sum(1 for entry in self.requests if entry.method in ("GET", "HEAD"))

    @property
    def writes(self):
        """POST/PUT/PATCH/DELETE requests without dryRun (the ones that may change something)."""
        return sum(1 for entry in self.requests if entry.method in WRITE_METHODS and "dryRun" not in entry.query)

    @property
    def dry_run_writes(self):
        return sum(1 for entry in self.requests if entry.method in WRITE_METHODS and "dryRun" in entry.query)

    def counts(self):
        return {"reads": self.reads, "writes": self.writes, "dry_run_writes": self.dry_run_writes}

    def write_log(self):
        """(method, path) of the logged non-dry-run writes."""
        return [(entry.method, entry.path) for entry in self.requests if entry.method in WRITE_METHODS and "dryRun" not in entry.query]

    def get(self, kind, name, namespace=None):
        """A copy of the live object, or None."""
        with self._lock:
            key = self._key(self._resource_of(kind), namespace, name)
            return self._load(key)

    def list(self, kind, namespace=None):
        with self._lock:
            return self._list(self._resource_of(kind), namespace, [])

    def add(self, obj, manager="kubectl-create"):
        """Create obj as another writer would (an Update by manager); returns the stored object."""
        resource = self._resource_of(obj["kind"], obj.get("apiVersion"))
        with self._lock:
            return self._create(resource, (obj.get("metadata") or {}).get("namespace"), copy.deepcopy(obj), manager, False)

    def edit(self, kind, name, namespace, patch, manager="kubectl-edit"):
        """A JSON merge patch by another writer (the way `kubectl edit` would change an object)."""
        with self._lock:
            resource = self._resource_of(kind)
            key = self._key(resource, namespace, name)
            live = self._require(resource, key)
            return self._update(resource, key, live, merge_patch(live, patch), manager, False)

    def applied_config(self, kind, name, namespace, manager):
        """The last config manager applied to the object (server-side apply), or None."""
        with self._lock:
            key = self._key(self._resource_of(kind), namespace, name)
            return copy.deepcopy(self._applied.get(key, {}).get(manager))

    def managers(self, kind, name, namespace=None):
        """{manager: set of owned field paths} of an object."""
        with self._lock:
            key = self._key(self._resource_of(kind), namespace, name)
            return {manager: set(info["fields"]) for manager, info in self._owners.get(key, {}).items()}

    def set_readiness(self, kind, name, namespace, mode):
        """Make one workload "ready" or "never" ready (overrides `workloads`) and update its status now."""
        with self._lock:
            resource = self._resource_of(kind)
            key = self._key(resource, namespace, name)
            self._readiness[(kind, namespace, name)] = mode
            if self._load(key) is not None:
                self._reconcile(resource, key, force_pods=True)

    # -- dispatch ---------------------------------------------------------------------

    def _resource_of(self, kind, api_version=None):
        for resource, (known_kind, _namespaced, _status) in RESOURCES.items():
            group_version = ("%s/%s" % resource[:2]).lstrip("/")
            if known_kind == kind and (api_version is None or api_version == group_version):
                return resource
        raise KeyError("unknown kind %s %s" % (api_version, kind))

    def _key(self, resource, namespace, name):
        namespaced = RESOURCES[resource][1]
        return (kmock.resource(*resource), namespace if namespaced else None, name)

    def _log_and_match(self, method, path, query, headers):
        """Log the request; the injection that answers it, if any."""
        with self._lock:
            self.requests.append(LoggedRequest(method, path, dict(query)))
            self.request_headers.append(list(headers.items()))
            for injection in self._injections:
                if injection.matches(method, path):
                    injection.remaining -= 1
                    injection.hits += 1
                    return injection
        return None

    def injected_answer(self, injection, method, path):
        """(status, payload) for an injected error."""
        if injection.body is not None:
            return injection.status, injection.body
        api_path = parse_api_path(path)
        status = injection.status
        try:
            reason = HTTPStatus(status).phrase.replace(" ", "")
        except ValueError:
            reason = "Unknown"
        message = "injected failure"
        details = None
        if api_path is not None:
            resource = "%s.%s" % (api_path.plural, api_path.group) if api_path.group else api_path.plural
            details = {"name": api_path.name, "group": api_path.group, "kind": api_path.plural}
            verb = {"GET": "get" if api_path.name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method, method.lower())
            if status == 403:
                scope = 'in the namespace "%s"' % api_path.namespace if api_path.namespace else "at the cluster scope"
                what = '%s "%s"' % (resource, api_path.name) if api_path.name else resource
                message = '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
                    what, self.user, verb, api_path.plural, api_path.group, scope)
            elif status == 409:
                reason = "Conflict"
                message = ('Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your changes '
                           "to the latest version and try again" % (resource, api_path.name))
            elif status == 404:
                reason = "NotFound"
                message = '%s "%s" not found' % (resource, api_path.name)
        reasons = {401: "Unauthorized", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                   504: "Timeout"}
        reason = reasons.get(status, reason)
        if status == 401:
            message = "Unauthorized"
        return status, status_object(status, reason, message, details)

    def handle(self, method, path, query, headers, body):
        """(status, payload) for a resource path, None for paths kmock serves."""
        with self._lock:
            try:
                self._authenticate(headers)
                api_path = parse_api_path(path)
                if api_path is None:
                    return None
                return 200, self._dispatch(method, api_path, query, headers, body)
            except ApiError as error:
                return error.code, error.payload()

    def _authenticate(self, headers):
        if self.token and headers.get("Authorization") != "Bearer %s" % self.token:
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _dispatch(self, method, api_path, query, headers, body):
        resource = (api_path.group, api_path.version, api_path.plural)
        group_version = ("%s/%s" % (api_path.group, api_path.version)).lstrip("/")
        if group_version not in self.served_groups or resource not in RESOURCES:
            raise ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")
        _kind, namespaced, has_status = RESOURCES[resource]
        if (api_path.namespace and not namespaced) or (namespaced and api_path.name and not api_path.namespace):
            raise ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")
        if api_path.subresource and (api_path.subresource != "status" or not has_status):
            raise ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")
        dry_run = query.get("dryRun")
        if dry_run is not None and dry_run != "All":
            raise ApiError(400, "BadRequest", 'dryRun: Unsupported value: "%s": supported values: "All"' % dry_run)
        dry_run = dry_run == "All"
        manager = query.get("fieldManager") or (headers.get("User-Agent") or "unknown").split("/")[0]
        key = self._key(resource, api_path.namespace, api_path.name)
        if method == "GET" and api_path.name is None:
            return self._list_answer(resource, api_path.namespace, query.get("labelSelector"))
        if method == "GET":
            return self._require(resource, key)
        if method == "POST" and api_path.name is None:
            return self._create(resource, api_path.namespace, self._body(body, resource, None), manager, dry_run)
        if api_path.name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "DELETE":
            return self._delete(resource, key, dry_run)
        if method in ("PUT", "PATCH"):
            return self._write(method, resource, key, api_path, query, headers, body, manager, dry_run)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _write(self, method, resource, key, api_path, query, headers, body, manager, dry_run):
        content_type = (headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if method == "PATCH" and content_type == "application/apply-patch+yaml":
            if api_path.subresource:
                raise ApiError(415, "UnsupportedMediaType", "apply to a subresource is not supported here")
            if not query.get("fieldManager"):
                raise ApiError(400, "BadRequest", "PATCH %s: fieldManager is required for apply requests" % resource[2])
            config = self._body(body, resource, key[2], yaml_ok=True)
            return self._apply(resource, key, config, query["fieldManager"], query.get("force") == "true", dry_run)
        live = self._require(resource, key)
        if method == "PUT":
            new = self._body(body, resource, key[2])
            sent = (new.get("metadata") or {}).get("resourceVersion")
            if sent and sent != live["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply '
                               "your changes to the latest version and try again" % (_resource_name(resource), key[2]),
                               {"name": key[2], "group": resource[0], "kind": resource[2]})
        else:
            new = self._patched(live, body, content_type)
        if api_path.subresource == "status":
            status_only = copy.deepcopy(live)
            status_only["status"] = new.get("status") or {}
            return self._update(resource, key, live, status_only, manager, dry_run, status_write=True)
        return self._update(resource, key, live, new, manager, dry_run)

    @staticmethod
    def _patched(live, body, content_type):
        try:
            patch = json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format: %s" % exc)
        if content_type == "application/json-patch+json":
            try:
                return jsonpatch.apply_patch(live, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(422, "Invalid", "the JSON patch cannot be applied: %s" % exc)
        if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return merge_patch(live, patch)
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: "
                       "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")

    def _body(self, body, resource, name, yaml_ok=False):
        """The object sent in a request, checked against the path."""
        try:
            obj = yaml.safe_load(body) if yaml_ok else json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format: %s" % exc)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request is not an object")
        kind = RESOURCES[resource][0]
        group_version = ("%s/%s" % resource[:2]).lstrip("/")
        if not yaml_ok:  # like the real server, a JSON body may leave them out and get them from the URL
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", group_version)
        if obj.get("kind") != kind or obj.get("apiVersion") != group_version:
            raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match the expected API version (%s), or the kind "
                           "(%s) is not %s" % (obj.get("apiVersion"), group_version, obj.get("kind"), kind))
        sent = (obj.get("metadata") or {}).get("name")
        if name is not None and sent and sent != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)" % (sent, name))
        return obj

    # -- storage ----------------------------------------------------------------------

    def _load(self, key):
        if key not in self.store or self.store[key].deleted:
            return None
        return copy.deepcopy(self.store[key].raw)

    def _save(self, key, obj):
        obj = copy.deepcopy(obj)
        if key in self.store:
            self.store[key].create(obj)
        else:
            self.store[key] = obj

    def _require(self, resource, key):
        live = self._load(key)
        if live is None:
            raise ApiError(404, "NotFound", '%s "%s" not found' % (_resource_name(resource), key[2]),
                           {"name": key[2], "group": resource[0], "kind": resource[2]})
        return live

    def _next_rv(self):
        self._rv += 1
        return str(self._rv)

    def _list(self, resource, namespace, requirements):
        items = []
        for (stored_resource, stored_namespace, _name), obj in list(self.store.items()):
            if stored_resource != kmock.resource(*resource) or obj.deleted:
                continue
            if namespace and stored_namespace != namespace:
                continue
            raw = copy.deepcopy(obj.raw)
            if selector_matches(requirements, (raw.get("metadata") or {}).get("labels")):
                items.append(raw)
        return sorted(items, key=lambda item: (item["metadata"].get("namespace") or "", item["metadata"]["name"]))

    def _list_answer(self, resource, namespace, selector):
        try:
            requirements = parse_selector(selector)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", "unable to parse requirement: %s" % exc)
        items = self._list(resource, namespace, requirements)
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": RESOURCES[resource][0] + "List", "apiVersion": ("%s/%s" % resource[:2]).lstrip("/"),
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    # -- writes -----------------------------------------------------------------------

    def _check_namespace(self, resource, namespace):
        if RESOURCES[resource][1] and self._load(self._key(("", "v1", "namespaces"), None, namespace)) is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % namespace, {"name": namespace, "kind": "namespaces"})

    def _create(self, resource, namespace, obj, manager, dry_run, operation="Update", applied=None):
        kind, namespaced, has_status = RESOURCES[resource]
        meta = obj.setdefault("metadata", {})
        if namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise ApiError(400, "BadRequest", "a namespaced object needs a namespace")
            meta["namespace"] = namespace
            self._check_namespace(resource, namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _index in range(5))
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "%s in version \"%s\" cannot be handled as a %s: name or generateName is required"
                           % (kind, resource[1], kind))
        key = self._key(resource, namespace, meta["name"])
        if self._load(key) is not None:
            raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (_resource_name(resource), meta["name"]),
                           {"name": meta["name"], "group": resource[0], "kind": resource[2]})
        if has_status:
            obj.pop("status", None)
        self._validate(resource, None, obj)
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
        meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": now(), "generation": 1})
        owners = {manager: {"operation": operation, "fields": tracked_paths(obj), "time": now()}}
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            self._render_managed_fields(resource, obj, owners)
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._owners[key] = owners
        self._applied[key] = {manager: applied} if applied is not None else {}
        self._render_managed_fields(resource, obj, owners)
        self._save(key, obj)
        self._reconcile(resource, key, force_pods=True)
        return obj

    def _apply(self, resource, key, config, manager, force, dry_run):
        """Server-side apply of config by manager (see the module docstring)."""
        config = copy.deepcopy(config)
        if RESOURCES[resource][2]:
            config.pop("status", None)
        live = self._load(key)
        if live is None:
            config.setdefault("metadata", {})["name"] = key[2]
            return self._create(resource, key[1], config, manager, dry_run, operation="Apply", applied=copy.deepcopy(config))
        owners = copy.deepcopy(self._owners.get(key, {}))
        new_fields = tracked_paths(config)
        conflicts = []
        for other, info in owners.items():
            if other == manager:
                continue
            for path in sorted(info["fields"] & new_fields):
                if get_path(live, path) != get_path(config, path):
                    conflicts.append((other, path))
        if conflicts and not force:
            text = ", ".join('conflict with "%s": .%s' % (other, ".".join(path)) for other, path in conflicts)
            raise ApiError(409, "Conflict", "Apply failed with %d conflict%s: %s" % (len(conflicts), "" if len(conflicts) == 1 else "s", text),
                           {"name": key[2], "group": resource[0], "kind": resource[2],
                            "causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "%s"' % other,
                                        "field": "." + ".".join(path)} for other, path in conflicts]})
        if force:
            for other, info in owners.items():
                if other != manager:
                    info["fields"] -= new_fields
        still_owned = set()
        for other, info in owners.items():
            if other != manager:
                still_owned |= info["fields"]
        new = copy.deepcopy(live)
        for path in sorted(owners.get(manager, {}).get("fields", set()) - new_fields, key=len, reverse=True):
            if path not in still_owned:
                delete_path(new, path)
        new = merge_applied(new, config)
        owners[manager] = {"operation": "Apply", "fields": new_fields, "time": now()}
        owners = {name: info for name, info in owners.items() if info["fields"]}
        return self._commit(resource, key, live, new, owners, dry_run, applied=(manager, config))

    def _update(self, resource, key, live, new, manager, dry_run, status_write=False):
        """A write that is not an apply (PUT, patches, status): the manager takes the fields it changed."""
        if RESOURCES[resource][2] and not status_write:
            new["status"] = copy.deepcopy(live.get("status"))
            if new["status"] is None:
                del new["status"]
        owners = copy.deepcopy(self._owners.get(key, {}))
        before, after = tracked_paths(live), tracked_paths(new)
        changed = {path for path in after if get_path(live, path) != get_path(new, path)}
        removed = before - after
        for info in owners.values():
            info["fields"] -= changed | removed
        if changed:
            entry = owners.setdefault(manager, {"operation": "Update", "fields": set(), "time": now()})
            entry["fields"] |= changed
            entry["time"] = now()
        owners = {name: info for name, info in owners.items() if info["fields"]}
        return self._commit(resource, key, live, new, owners, dry_run, reconcile=not status_write)

    def _commit(self, resource, key, live, new, owners, dry_run, applied=None, reconcile=True):
        """Validate and store new (server metadata kept from live); a no-op changes nothing."""
        meta = new.setdefault("metadata", {})
        for field in SYSTEM_METADATA:
            if field in live["metadata"]:
                meta[field] = copy.deepcopy(live["metadata"][field])
            else:
                meta.pop(field, None)
        meta["name"], meta["namespace"] = live["metadata"]["name"], live["metadata"].get("namespace")
        if meta["namespace"] is None:
            del meta["namespace"]
        new["apiVersion"], new["kind"] = live["apiVersion"], live["kind"]
        self._validate(resource, live, new)
        if _content(new) == _content(live):
            if not dry_run and applied is not None:
                self._applied.setdefault(key, {})[applied[0]] = copy.deepcopy(applied[1])
                self._owners[key] = owners
            return live
        if _spec_part(new) != _spec_part(live):
            meta["generation"] = (live["metadata"].get("generation") or 1) + 1
        self._render_managed_fields(resource, new, owners)
        if dry_run:
            return new
        meta["resourceVersion"] = self._next_rv()
        self._owners[key] = owners
        if applied is not None:
            self._applied.setdefault(key, {})[applied[0]] = copy.deepcopy(applied[1])
        self._save_version(key, new)
        if reconcile:
            self._reconcile(resource, key, force_pods=_spec_part(new) != _spec_part(live))
        return new

    def _save_version(self, key, obj):
        self.store[key].history.append(copy.deepcopy(obj))

    def _render_managed_fields(self, resource, obj, owners):
        group_version = ("%s/%s" % resource[:2]).lstrip("/")
        obj["metadata"]["managedFields"] = [
            {"manager": manager, "operation": info["operation"], "apiVersion": group_version, "time": info["time"],
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(info["fields"])}
            for manager, info in sorted(owners.items())]

    def _delete(self, resource, key, dry_run):
        live = self._require(resource, key)
        if dry_run:
            return live
        self.store[key].delete()
        self._owners.pop(key, None)
        self._applied.pop(key, None)
        self._next_rv()
        kind = RESOURCES[resource][0]
        if kind in ("Deployment", "DaemonSet"):
            self._delete_pods(key[1], live["metadata"]["uid"])
        if kind == "Namespace":
            for other_key, obj in list(self.store.items()):
                if other_key[1] == key[2] and not obj.deleted:
                    obj.delete()
        return live

    # -- validation -------------------------------------------------------------------

    def _validate(self, resource, live, new):
        """422 Invalid for immutable fields that change and for broken workload selectors."""
        kind = RESOURCES[resource][0]
        causes = []
        if live is not None and kind == "StorageClass":
            for field in STORAGE_CLASS_IMMUTABLE:
                if live.get(field) != new.get(field):
                    causes.append(("FieldValueForbidden", field, "Forbidden: updates to %s are forbidden." % field))
        if live is not None and kind == "CSIDriver":
            old_spec, new_spec = live.get("spec") or {}, new.get("spec") or {}
            for field in sorted(set(old_spec) | set(new_spec)):
                if old_spec.get(field, _MISSING) != new_spec.get(field, _MISSING):
                    causes.append(("FieldValueInvalid", "spec." + field,
                                   "Invalid value: %s: field is immutable" % go_value(new_spec.get(field, _MISSING))))
        if kind in ("Deployment", "DaemonSet"):
            spec = new.get("spec") or {}
            selector = spec.get("selector")
            if live is not None and (live.get("spec") or {}).get("selector") != selector:
                causes.append(("FieldValueInvalid", "spec.selector", "Invalid value: %s: field is immutable" % go_value(selector)))
            if not selector:
                causes.append(("FieldValueRequired", "spec.selector", "Required value"))
            else:
                labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
                wanted = selector.get("matchLabels") or {}
                if any(labels.get(name) != value for name, value in wanted.items()):
                    causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                                   "Invalid value: %s: `selector` does not match template `labels`" % go_value(labels)))
        if causes:
            texts = ["%s: %s" % (field, message) for _reason, field, message in causes]
            name = new["metadata"].get("name")
            qualified = "%s.%s" % (kind, resource[0]) if resource[0] else kind
            message = '%s "%s" is invalid: %s' % (qualified, name, texts[0] if len(texts) == 1 else "[%s]" % ", ".join(texts))
            raise ApiError(422, "Invalid", message, {
                "name": name, "group": resource[0], "kind": kind,
                "causes": [{"reason": reason, "message": message, "field": field} for reason, field, message in causes]})

    # -- the controller stand-in ------------------------------------------------------

    def _mode(self, kind, namespace, name):
        return self._readiness.get((kind, namespace, name), self.workloads)

    def _reconcile(self, resource, key, force_pods=False):
        """Write a workload's status (and Pods) as a controller would after a change."""
        kind = RESOURCES[resource][0]
        if kind not in ("Deployment", "DaemonSet"):
            return
        live = self._load(key)
        ready = self._mode(kind, key[1], key[2]) == "ready"
        generation = live["metadata"].get("generation", 1)
        if kind == "Deployment":
            replicas = (live.get("spec") or {}).get("replicas", 1)
            count = replicas if ready else 0
            status = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                      "readyReplicas": count, "availableReplicas": count, "unavailableReplicas": replicas - count,
                      "conditions": [{"type": "Available", "status": "True" if ready else "False",
                                      "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable"}]}
            pods = replicas
        else:
            nodes = self.node_count
            count = nodes if ready else 0
            status = {"observedGeneration": generation, "desiredNumberScheduled": nodes, "currentNumberScheduled": nodes,
                      "updatedNumberScheduled": nodes, "numberReady": count, "numberAvailable": count,
                      "numberUnavailable": nodes - count, "numberMisscheduled": 0}
            pods = nodes
        if self.create_pods and (force_pods or not self._owned_pods(key[1], live["metadata"]["uid"])):
            self._delete_pods(key[1], live["metadata"]["uid"])
            for index in range(pods):
                self._create_pod(live, ready, index)
        if live.get("status") != status:
            live["status"] = status
            live["metadata"]["resourceVersion"] = self._next_rv()
            self._save_version(key, live)

    def _owned_pods(self, namespace, uid):
        pods = []
        for key, obj in list(self.store.items()):
            if key[0] == kmock.resource("", "v1", "pods") and key[1] == namespace and not obj.deleted:
                if any(ref.get("uid") == uid for ref in obj.raw["metadata"].get("ownerReferences") or []):
                    pods.append(key)
        return pods

    def _delete_pods(self, namespace, uid):
        for key in self._owned_pods(namespace, uid):
            self.store[key].delete()
            self._next_rv()

    def _create_pod(self, workload, ready, index):
        template = copy.deepcopy((workload.get("spec") or {}).get("template") or {})
        meta = workload["metadata"]
        containers = (template.get("spec") or {}).get("containers") or []
        if ready:
            statuses = [{"name": c.get("name"), "image": c.get("image"), "ready": True, "restartCount": 0,
                         "state": {"running": {"startedAt": now()}}} for c in containers]
            status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": statuses}
        else:
            statuses = [{"name": c.get("name"), "image": c.get("image"), "ready": False, "restartCount": 0,
                         "state": {"waiting": {"reason": self.pod_waiting_reason,
                                               "message": 'Back-off pulling image "%s"' % c.get("image")}}} for c in containers]
            status = {"phase": "Pending", "containerStatuses": statuses,
                      "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                      "message": "containers with unready status: [%s]" % " ".join(c.get("name") for c in containers)}]}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "%s-%s%d" % (meta["name"], secrets.token_hex(3)[:5], index), "namespace": meta["namespace"],
                            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                            "ownerReferences": [{"apiVersion": workload["apiVersion"], "kind": workload["kind"], "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True}],
                            "uid": str(uuid.uuid4()), "creationTimestamp": now(), "resourceVersion": self._next_rv()},
               "spec": template.get("spec") or {}, "status": status}
        self._save(self._key(("", "v1", "pods"), meta["namespace"], pod["metadata"]["name"]), pod)


def _resource_name(resource):
    return "%s.%s" % (resource[2], resource[0]) if resource[0] else resource[2]


def _content(obj):
    """What a write can change: everything but resourceVersion and managedFields' times."""
    clean = copy.deepcopy(obj)
    meta = clean.get("metadata") or {}
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    return clean


def _spec_part(obj):
    return {key: value for key, value in obj.items() if key not in ("metadata", "status", "apiVersion", "kind")}


class _Handler(kmock.KubernetesEmulator):
    """kmock's emulator with the resource paths served by FakeApiServer.handle()."""

    async def __call__(self, raw_request):
        body = await raw_request.read()
        fake = self.fake
        method = raw_request.method.upper()
        injection = fake._log_and_match(method, raw_request.path, raw_request.query, raw_request.headers)
        if injection is not None:
            if injection.delay:
                await asyncio.sleep(injection.delay)
            if injection.status is not None:
                return _response(*fake.injected_answer(injection, method, raw_request.path))
        answer = fake.handle(method, raw_request.path, dict(raw_request.query), raw_request.headers, body)
        if answer is None:
            return await super().__call__(raw_request)
        return _response(*answer)

    async def _serve_server_version(self, request):
        return dict(self.fake.version_info)


def _response(status, payload):
    if isinstance(payload, (dict, list)):
        return aiohttp.web.json_response(payload, status=status)
    return aiohttp.web.Response(status=status, text=str(payload), content_type="text/plain")
