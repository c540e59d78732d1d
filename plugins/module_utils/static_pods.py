# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a static pod running what its manifest says, and healthy?

After a manifest in kubelet's static pod dir changes, kubelet stops the old container and starts
a new one. The component is back when:

1. a process runs the container's command and args (on the host, the container's process
   shows them as its command line; the lab's stand-in prefixes its interpreter, so the
   manifest's command must be the *end* of the command line), started after the manifest
   changed; and
2. the container's liveness probe (``livenessProbe.httpGet`` in the manifest, the request
   kubelet itself makes) answers 2xx/3xx. Like kubelet, HTTPS probes do not verify the
   certificate: the components serve self-signed ones on localhost.
"""

from __future__ import annotations

import os
import time

from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import open_url

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is a requirement of the collection
    yaml = None
    HAS_YAML = False

from ansible_collections.kubestorage.enablement.plugins.module_utils import kubelet_node

# The components' own defaults, used when a manifest has no httpGet liveness probe.
DEFAULT_PROBES = {
    "kube-apiserver": ("HTTPS", 6443, "/livez"),
    "kube-controller-manager": ("HTTPS", 10257, "/healthz"),
    "kube-scheduler": ("HTTPS", 10259, "/healthz"),
}
# /proc/<pid>/stat start times are relative to btime, which has 1 s resolution.
CLOCK_SLACK = 1.0


class StaticPodError(Exception):
    """A manifest that cannot be read, or a pod that did not come back."""


def read_container(path, container=None):
    """The container's name, command+args and liveness probe URL from the manifest at path."""
    if yaml is None:
        raise StaticPodError("%s: reading static pod manifests needs PyYAML on the node (pip install PyYAML, "
                             "or the distribution's python3-yaml)" % path)
    try:
        with open(path, "rb") as fh:
            doc = yaml.safe_load(fh.read().decode("utf-8"))
        containers = doc["spec"]["containers"]
    except FileNotFoundError:
        raise StaticPodError("%s: no such static pod manifest" % path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise StaticPodError("%s: not a readable Pod manifest (%s)" % (path, " ".join(str(exc).split())))
    wanted = [c for c in containers or [] if isinstance(c, dict) and (container is None or c.get("name") == container)]
    if not wanted:
        raise StaticPodError("%s: no container named %r (set container to one of %s)"
                             % (path, container, [c.get("name") for c in containers or [] if isinstance(c, dict)]))
    spec = wanted[0]
    command = [str(x) for x in (spec.get("command") or [])] + [str(x) for x in (spec.get("args") or [])]
    if not command:
        raise StaticPodError("%s: container %s has no command to recognise its process by" % (path, spec.get("name")))
    return {"name": spec.get("name"), "command": command, "probe_url": probe_url(spec, command)}


def probe_url(spec, command):
    """The URL kubelet's httpGet liveness probe requests, or the component's default; None if neither."""
    probe = ((spec.get("livenessProbe") or {}).get("httpGet")) or None
    component = os.path.basename(command[0])
    default = DEFAULT_PROBES.get(component)
    if probe is None:
        if default is None:
            return None
        scheme, port, path = default
        host = "127.0.0.1"
    else:
        scheme = str(probe.get("scheme") or "HTTP").upper()
        host = probe.get("host") or "127.0.0.1"     # static control-plane pods use the host network
        port = probe.get("port")
        path = probe.get("path") or "/"
        if not isinstance(port, int):                # a named port: look it up in the container's ports
            named = [p.get("containerPort") for p in spec.get("ports") or [] if p.get("name") == port]
            port = named[0] if named else (default[1] if default else None)
        if port is None:
            return None
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "%s://%s:%d%s" % (scheme.lower(), host, int(port), path)


def _cmdline(proc, pid):
    try:
        with open(os.path.join(proc, pid, "cmdline"), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1]]


def find_processes(command, proc="/proc"):
    """[(pid, start time)] of processes whose command line ends with command."""
    found = []
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        line = _cmdline(proc, pid)
        if line and len(line) >= len(command) and line[-len(command):] == command:
            try:
                found.append((int(pid), kubelet_node.process_start_time(pid, proc)))
            except (OSError, ValueError, StopIteration):
                continue                           # it exited meanwhile
    return sorted(found)


def probe(url, timeout=5.0):
    """(ok, detail): one request, like kubelet's prober (2xx and 3xx are healthy)."""
    try:
        with open_url(url, headers={"User-Agent": "kube-probe/kubestorage"}, timeout=timeout,
                      validate_certs=False) as resp:
            return 200 <= resp.status < 400, "HTTP %d" % resp.status
    except HTTPError as exc:
        return False, "HTTP %d" % exc.code
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, " ".join(str(reason).split())


def check(manifest, container=None, health_url=None, proc="/proc", probe_timeout=5.0):
    """One look: a dict with running (pid or None), healthy, detail, url, command."""
    info = read_container(manifest, container)
    url = health_url or info["probe_url"]
    changed_at = os.stat(manifest).st_mtime
    running = find_processes(info["command"], proc)
    current = [(pid, started) for pid, started in running if started >= changed_at - CLOCK_SLACK]
    result = {"container": info["name"], "command": info["command"], "url": url, "pid": None, "healthy": False,
              "manifest_changed_at": changed_at}
    if not current:
        result["detail"] = ("the process running this command started before the manifest changed (pid %d)" % running[0][0]
                            if running else "no process runs the manifest's command yet")
        return result
    result["pid"], result["started_at"] = current[-1]
    if url is None:
        result.update(healthy=True, detail="running (the manifest has no httpGet liveness probe)")
        return result
    result["healthy"], result["detail"] = probe(url, probe_timeout)
    return result


def wait(manifest, container=None, health_url=None, timeout=120.0, interval=2.0, proc="/proc",
         clock=time.monotonic, sleep=time.sleep):
    """Poll check() until the pod runs its manifest and is healthy; StaticPodError after timeout."""
    deadline = clock() + timeout
    start = clock()
    while True:
        result = check(manifest, container, health_url, proc)
        if result["healthy"]:
            result["waited"] = round(clock() - start, 1)
            return result
        if clock() >= deadline:
            where = " (%s)" % result["url"] if result.get("url") else ""
            raise StaticPodError("%s from %s did not come back within %d s: %s%s"
                                 % (result["container"], manifest, timeout, result["detail"], where))
        sleep(interval)
