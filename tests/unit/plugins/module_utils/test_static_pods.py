# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/static_pods.py with real processes and a real HTTP probe.

A "component" here is a sleeping Python process whose command line ends with the manifest's
command, and the probe is a local HTTP server: the same two signals the module reads on a node.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from ansible_collections.kubestorage.enablement.plugins.module_utils import static_pods

SLEEPER = "import time; time.sleep(60)"


def manifest(command, probe=None, name="kube-controller-manager", ports=None):
    container = {"name": name, "image": "registry.k8s.io/%s:v1.33.0" % name, "command": command}
    if probe is not None:
        container["livenessProbe"] = {"httpGet": probe}
    if ports:
        container["ports"] = ports
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"containers": [container], "hostNetwork": True}}


def write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def component():
    """component(command) starts a process whose command line ends with command."""
    procs = []

    def start(command):
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER] + command)
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def health():
    """A local HTTP server; .status sets what /healthz answers."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = server.status if self.path == "/healthz" else 404
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_probe_url_from_the_manifest_or_the_component_default(tmp_path):
    probe = {"host": "127.0.0.1", "port": 10257, "path": "/healthz", "scheme": "HTTPS"}
    path = write(tmp_path / "kcm.yaml", manifest(["kube-controller-manager", "--v=2"], probe))
    assert static_pods.read_container(path)["probe_url"] == "https://127.0.0.1:10257/healthz"
    path = write(tmp_path / "api.yaml", manifest(["kube-apiserver"], name="kube-apiserver"))
    assert static_pods.read_container(path)["probe_url"] == "https://127.0.0.1:6443/livez"
    ports = [{"name": "probe-port", "containerPort": 10299}]
    path = write(tmp_path / "named.yaml", manifest(["kube-scheduler"], {"port": "probe-port", "path": "/healthz"},
                                                   name="kube-scheduler", ports=ports))
    assert static_pods.read_container(path)["probe_url"] == "http://127.0.0.1:10299/healthz"
    path = write(tmp_path / "v6.yaml", manifest(["etcd"], {"host": "::1", "port": 2381, "path": "/health"}, name="etcd"))
    assert static_pods.read_container(path)["probe_url"] == "http://[::1]:2381/health"
    path = write(tmp_path / "etcd.yaml", manifest(["etcd"], name="etcd"))
    assert static_pods.read_container(path)["probe_url"] is None


@pytest.mark.parametrize("text, problem", [
    (None, "no such static pod manifest"),
    ("spec: [\n", "not a readable Pod manifest"),
    ("kind: Pod\n", "not a readable Pod manifest"),
    (yaml.safe_dump(manifest([])), "has no command"),
])
def test_unreadable_manifests_are_named(tmp_path, text, problem):
    path = tmp_path / "kcm.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(static_pods.StaticPodError) as err:
        static_pods.read_container(str(path))
    assert str(path) in str(err.value) and problem in str(err.value)


def test_unknown_container_lists_the_ones_there(tmp_path):
    path = write(tmp_path / "kcm.yaml", manifest(["kube-controller-manager"]))
    with pytest.raises(static_pods.StaticPodError, match=r"no container named 'sidecar'.*kube-controller-manager"):
        static_pods.read_container(path, "sidecar")


def test_find_processes_matches_the_end_of_the_command_line(component):
    command = ["kube-controller-manager", "--flex-volume-plugin-dir=/tmp/x-%d" % os.getpid()]
    proc = component(command)
    deadline = time.monotonic() + 5
    while not static_pods.find_processes(command) and time.monotonic() < deadline:
        time.sleep(0.05)
    found = static_pods.find_processes(command)
    assert [pid for pid, started in found] == [proc.pid]
    assert abs(found[0][1] - time.time()) < 10
    assert static_pods.find_processes(command[:1] + ["--flex-volume-plugin-dir=/other"]) == []


def test_healthy_when_the_new_process_runs_and_the_probe_passes(tmp_path, component, health):
    command = ["kube-controller-manager", "--unique=%s" % tmp_path]
    path = write(tmp_path / "kcm.yaml", manifest(command, {"port": health.server_port, "path": "/healthz"}))
    result = static_pods.check(path)
    assert (result["pid"], result["healthy"]) == (None, False)
    assert result["detail"] == "no process runs the manifest's command yet"

    proc = component(command)
    result = static_pods.wait(path, timeout=10, interval=0.1)
    assert (result["pid"], result["healthy"], result["detail"]) == (proc.pid, True, "HTTP 200")

    health.status = 500
    result = static_pods.check(path)
    assert (result["healthy"], result["detail"]) == (False, "HTTP 500")


def test_a_process_older_than_the_manifest_does_not_count(tmp_path, component, health):
    command = ["kube-controller-manager", "--unique=%s" % tmp_path]
    proc = component(command)
    time.sleep(0.2)
    path = write(tmp_path / "kcm.yaml", manifest(command, {"port": health.server_port, "path": "/healthz"}))
    future = time.time() + 5
    os.utime(path, (future, future))
    result = static_pods.check(path)
    assert not result["healthy"]
    assert result["detail"] == "the process running this command started before the manifest changed (pid %d)" % proc.pid


def test_wait_times_out_with_the_reason(tmp_path, health):
    command = ["kube-controller-manager", "--unique=%s" % tmp_path]
    path = write(tmp_path / "kcm.yaml", manifest(command, {"port": health.server_port, "path": "/healthz"}))
    clock = iter(range(0, 1000, 5))
    with pytest.raises(static_pods.StaticPodError) as err:
        static_pods.wait(path, timeout=20, clock=lambda: next(clock), sleep=lambda s: None)
    message = str(err.value)
    assert message.startswith("kube-controller-manager from %s did not come back within 20 s" % path)
    assert "no process runs the manifest's command yet" in message
    assert "http://127.0.0.1:%d/healthz" % health.server_port in message


def test_connection_refused_is_reported(tmp_path, component):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["kube-controller-manager", "--unique=%s" % tmp_path]
    path = write(tmp_path / "kcm.yaml", manifest(command, {"port": port, "path": "/healthz"}))
    component(command)
    result = None
    deadline = time.monotonic() + 5
    while (result is None or result["pid"] is None) and time.monotonic() < deadline:
        result = static_pods.check(path)
        time.sleep(0.05)
    assert result["pid"] is not None and not result["healthy"]
    assert "refused" in result["detail"].lower()
