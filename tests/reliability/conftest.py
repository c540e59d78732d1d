# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the reliability suite: real lab nodes in podman and the fake API server over HTTP,
driven by ansible-playbook as an operator would drive them.

`lab` starts the lab cluster 'reliability' once per session: cp1 (control plane, 1.33) and
w1 (worker, 1.25). Both are converged with the kubelet_storage and flexvolume roles (driver
reliability~good, version 1) and cp1 gets a few deliberately broken files in /root/reliability,
so that every case starts from a managed node. `apiserver` is one fake API server per session
with the hostpath CSI driver deployed by csi_driver.

`fingerprint(node)` is what "nothing changed" means on a node: path, type, mode, owner, size and
sha256 of every file under the node's storage-relevant paths (plugin dir, kubelet and
control-plane config, systemd units). Directory mtimes are left out: a validated-and-refused
change may create and remove a staging file, which is not a change.
"""

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "api"))

from fake_apiserver import FakeApiServer  # noqa: E402  (tests/api is not a package)

LABCTL = TOP / "lab" / "labctl"
CLUSTER = "reliability"
NODES = ("cp1:control-plane:1.33", "w1:worker:1.25")
PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
FINGERPRINT_PATHS = (
    PLUGIN_DIR,
    "/etc/kubernetes",
    "/etc/default/kubelet",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/kubeadm-flags.env",
    "/etc/systemd/system",
    "/usr/lib/systemd/system/kubelet.service.d",
    "/root/reliability",
)
# Backups the roles make on purpose: Ansible's backup_local (<file>.<pid>.<time>~) and the hidden
# manifest copies (.<file>.<time>.bak). Only the restart-safety case leaves them out.
BACKUP_PATTERNS = ("*~", ".*.bak")

DRIVER_OK = """#!/bin/sh
# reliability test driver, version {version}
case "$1" in
  init) printf '{{"status":"Success","capabilities":{{"attach":false}}}}' ;;
  *) printf '{{"status":"Not supported"}}' ;;
esac
"""
DRIVER_FAILING = """#!/bin/sh
printf '{"status":"Failure","message":"reliability: this version cannot load"}'
exit 1
"""
DRIVER_NOT_JSON = """#!/bin/sh
echo "segmentation fault (core dumped)"
"""
DRIVER_HANGS = """#!/bin/sh
sleep 60
"""
DRIVER_ATTACH = """#!/bin/sh
printf '{"status":"Success","capabilities":{"attach":true}}'
"""

# Files on cp1 that the bad-input cases point the modules at.
BROKEN_FILES = {
    "unterminated.env": 'KUBELET_EXTRA_ARGS="--v=2 --node-labels=a=b\n',
    "not-yaml-manifest.yaml": "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n"
                              "    command: [kube-apiserver, --a=b\n      image: x\n",
    "no-container-manifest.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n"
                                  "spec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.21-0\n"
                                  "    command: [etcd]\n",
    "not-yaml-config.yaml": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                            "featureGates: {CSIInlineVolume: true\n",
    "proxy-config.yaml": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n",
}


def write_driver(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


class Lab(object):
    """The running lab cluster: inventory path, driver sources, helpers to run plays."""

    def __init__(self, inventory, sources, workdir):
        self.inventory = inventory
        self.sources = sources
        self.workdir = workdir
        self._plays = 0

    def container(self, node):
        return "ksl-%s-%s" % (CLUSTER, node)

    def sh(self, node, script, check=True):
        proc = subprocess.run(["podman", "exec", self.container(node), "sh", "-c", script], capture_output=True,
                              text=True, check=False, timeout=120)
        if check and proc.returncode:
            raise AssertionError("%s: %s failed (%d): %s%s" % (node, script, proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    def fingerprint(self, node, ignore_backups=False):
        excludes = " ".join("-not -name %s" % shlex.quote(p) for p in BACKUP_PATTERNS) if ignore_backups else ""
        paths = " ".join(shlex.quote(p) for p in FINGERPRINT_PATHS)
        script = ("find %s %s -printf '%%y %%m %%u:%%g %%s %%p\\n' 2>/dev/null | sort; "
                  "find %s -type f %s -exec sha256sum {} + 2>/dev/null | sort") % (paths, excludes, paths, excludes)
        return self.sh(node, script, check=False)

    def fingerprints(self, ignore_backups=False):
        names = [node.split(":", 1)[0] for node in NODES]
        return {name: self.fingerprint(name, ignore_backups) for name in names}

    def playbook(self, plays, extra_vars=None, env=None, timeout=600):
        """Run plays (a list of dicts) with ansible-playbook; returns a PlayRun."""
        self._plays += 1
        path = self.workdir / ("play-%03d.yml" % self._plays)
        path.write_text(yaml.safe_dump(plays, sort_keys=False))
        command = ["ansible-playbook", "-i", self.inventory, str(path)]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        proc = subprocess.run(command, capture_output=True, text=True, env=ansible_env(env), timeout=timeout,
                              check=False)
        return PlayRun(proc)


def ansible_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K8S_AUTH_", "ANSIBLE_")) and k != "KUBECONFIG"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(TOP / ".cache" / "collections"), ANSIBLE_CONFIG=str(TOP / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    env.update(extra or {})
    return env


class PlayRun(object):
    """An ansible-playbook run read through the ansible.posix.json callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise AssertionError("ansible-playbook printed no JSON (rc %d): %s %s" % (proc.returncode, proc.stdout,
                                                                                      proc.stderr))

    def results(self):
        for play in self.data["plays"]:
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    yield task["task"]["name"], host, result

    def failures(self):
        return [(name, host, result) for name, host, result in self.results()
                if (result.get("failed") or result.get("unreachable")) and not result.get("ignore_errors")]

    def failure_message(self):
        """The message of the failure that ended the play (the last one: failures inside a block that
        its rescue handled come before it); for a loop, the failed item's."""
        failures = self.failures()
        if not failures:
            return None
        result = failures[-1][2]
        for item in result.get("results", []):
            if item.get("failed"):
                return item.get("msg", "")
        return result.get("msg", "")

    def changed_hosts(self):
        return {host: stats["changed"] for host, stats in self.data["stats"].items()}

    def summary(self):
        return json.dumps([[n, h, r.get("msg")] for n, h, r in self.failures()], indent=1)[:4000] + self.stderr[-2000:]


@pytest.fixture(scope="session")
def apiserver():
    server = FakeApiServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, apiserver):
    workdir = tmp_path_factory.mktemp("reliability")
    sources = {
        "v1": write_driver(workdir / "good-v1", DRIVER_OK.format(version=1)),
        "v2": write_driver(workdir / "good-v2", DRIVER_OK.format(version=2)),
        "failing": write_driver(workdir / "failing", DRIVER_FAILING),
        "not_json": write_driver(workdir / "not-json", DRIVER_NOT_JSON),
        "hangs": write_driver(workdir / "hangs", DRIVER_HANGS),
        "attach": write_driver(workdir / "attach", DRIVER_ATTACH),
        "kubeconfig": apiserver.write_kubeconfig(workdir / "kubeconfig"),
    }
    up = subprocess.run([str(LABCTL), "--cluster", CLUSTER, "up", "--replace"] + list(NODES), capture_output=True,
                        text=True, check=False, timeout=300)
    assert up.returncode == 0, up.stderr
    lab = Lab(up.stdout.strip().splitlines()[-1], sources, workdir)
    try:
        broken = " && ".join("printf %%s %s > /root/reliability/%s" % (shlex.quote(text), name)
                             for name, text in BROKEN_FILES.items())
        lab.sh("cp1", "mkdir -p /root/reliability && " + broken)
        converge = lab.playbook(CONVERGE, extra_vars={"driver_v1": sources["v1"], "kubeconfig": sources["kubeconfig"]})
        assert converge.rc == 0, converge.summary()
        yield lab
    finally:
        subprocess.run([str(LABCTL), "--cluster", CLUSTER, "down"], capture_output=True, check=False, timeout=300)


HOSTPATH = {
    "name": "hostpath.csi.k8s.io",
    "driver_image": "registry.k8s.io/sig-storage/hostpathplugin:v1.17.0",
    "driver_args": ["--drivername=hostpath.csi.k8s.io", "--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"],
    "attach_required": False,
    "storage_classes": [{"name": "csi-hostpath", "default": True, "volume_binding_mode": "WaitForFirstConsumer"}],
}

CONVERGE = yaml.safe_load(textwrap.dedent("""
    - name: Converge the lab nodes
      hosts: k8s_cluster
      gather_facts: false
      roles:
        - role: kubestorage.enablement.kubelet_storage
        - role: kubestorage.enablement.flexvolume
          vars:
            flexvolume_drivers:
              - name: reliability~good
                src: "{{ driver_v1 }}"
    - name: Deploy the hostpath CSI driver to the fake API server
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
      tasks:
        - name: Deploy
          kubestorage.enablement.csi_driver: %s
    """) % json.dumps(dict(HOSTPATH, kubeconfig="{{ kubeconfig }}")))
