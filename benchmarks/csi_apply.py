"""Benchmark: csi_driver applying a full CSI driver versus kubernetes.core.k8s applying the same
objects, against the same local fake API server (tests/api/fake_apiserver.py), in one run.

1. csi_driver renders the hostpath driver to files (output_dir), the objects both sides apply.
2. On a fresh server each: csi_driver (server-side apply), kubernetes.core.k8s with its default
   (state: present) and kubernetes.core.k8s with server_side_apply, one task looping over the
   rendered files. Each applies twice: the first run creates, the second is a no-op.
Printed: wall time of each ansible-playbook run, HTTP requests the server saw (reads, writes),
and the ratios kubernetes.core / csi_driver.
Usage (from the repo root, after `make setup`):
    PYTHONPATH=.cache/collections .venv/bin/python benchmarks/csi_apply.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "api"))

from fake_apiserver import FakeApiServer  # noqa: E402

DRIVER = {
    "name": "hostpath.csi.k8s.io",
    "driver_image": "registry.k8s.io/sig-storage/hostpathplugin:v1.17.0",
    "driver_args": ["--drivername=hostpath.csi.k8s.io", "--endpoint=$(CSI_ENDPOINT)", "--nodeid=$(KUBE_NODE_NAME)"],
    "attach_required": False,
    "volume_lifecycle_modes": ["Persistent", "Ephemeral"],
    "storage_classes": [{"name": "csi-hostpath", "default": True, "volume_binding_mode": "WaitForFirstConsumer"}],
}


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "K8S_AUTH_")) and k != "KUBECONFIG"}
    e.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".cache", "collections"),
             ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return e


def play(tmp, name, task):
    path = os.path.join(tmp, name + ".yml")
    with open(path, "w") as fh:
        yaml.safe_dump([{"name": name, "hosts": "localhost", "connection": "local", "gather_facts": False,
                         "vars": {"ansible_python_interpreter": sys.executable}, "tasks": [task]}], fh)
    return path


def run(path):
    start = time.perf_counter()
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", path], env=env(), capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - start
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    if proc.returncode:
        sys.exit("%s failed: %s" % (path, json.dumps(data["plays"][-1]["tasks"][-1]["hosts"])[:3000]))
    return elapsed, data["stats"]["localhost"]["changed"]


def measure(tmp, label, make_task):
    server = FakeApiServer().start()
    try:
        kubeconfig = server.write_kubeconfig(os.path.join(tmp, label + ".kubeconfig"))
        path = play(tmp, label, make_task(kubeconfig))
        rows = []
        for attempt in ("first", "no-op"):
            server.clear_log()
            elapsed, changed = run(path)
            rows.append({"run": attempt, "seconds": elapsed, "changed": changed, "reads": server.reads,
                         "writes": server.writes, "requests": len(server.requests)})
        objects = sum(len(server.list(kind)) for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                                          "RoleBinding", "CSIDriver", "Deployment", "DaemonSet",
                                                          "StorageClass"))
        return rows, objects
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        render = os.path.join(tmp, "render")
        elapsed, _changed = run(play(tmp, "render", {"kubestorage.enablement.csi_driver": dict(
            DRIVER, output_dir=render, kubernetes_version="1.33")}))
        with open(os.path.join(render, "kustomization.yaml")) as fh:
            files = [os.path.join(render, name) for name in yaml.safe_load(fh)["resources"]]
        print("rendered %d files in %.1fs" % (len(files), elapsed))
        contenders = {
            "csi_driver": lambda kc: {"kubestorage.enablement.csi_driver": dict(DRIVER, kubeconfig=kc)},
            "k8s (default)": lambda kc: {"kubernetes.core.k8s": {"src": "{{ item }}", "kubeconfig": kc},
                                         "loop": files},
            "k8s (server-side apply)": lambda kc: {"kubernetes.core.k8s": {
                "src": "{{ item }}", "kubeconfig": kc, "server_side_apply": {"field_manager": "bench", "force_conflicts": True}},
                "loop": files},
        }
        results = {}
        for label, make_task in contenders.items():
            results[label] = measure(tmp, label.replace(" ", "_").replace("(", "").replace(")", ""), make_task)
    base = results["csi_driver"][0]
    print("\n%-26s %-6s %8s %8s %6s %7s %8s" % ("", "run", "seconds", "changed", "reads", "writes", "requests"))
    for label, (rows, objects) in results.items():
        for row in rows:
            name = label if row["run"] == "first" else ""
            values = (name, row["run"], row["seconds"], row["changed"], row["reads"], row["writes"], row["requests"])
            print("%-26s %-6s %8.2f %8s %6d %7d %8d" % values)
        print("%-26s objects on the server: %d" % ("", objects))
    for label, (rows, _objects) in results.items():
        if label == "csi_driver":
            continue
        for i, run_name in enumerate(("first", "no-op")):
            print("%s / csi_driver, %s run: time %.2f, requests %.2f" % (
                label, run_name, rows[i]["seconds"] / base[i]["seconds"], rows[i]["requests"] / base[i]["requests"]))


if __name__ == "__main__":
    main()
