"""Benchmark: playbooks/upgrade.yml over N lab nodes, time per node against serial and forks.

Starts N lab workers (cluster 'bench-upgrade', default N=6), installs driver version 1 with the
flexvolume role, then in one run upgrades back and forth (1 -> 2 -> 1 ...) once per setting of
kubestorage_upgrade_serial (the batch size after the one-node canary) and forks, and prints the
wall time, the time per node, and the speed-up over serial=1. Every upgrade must change every node.
Usage (from the repo root, after `make setup lab-image`):
    .venv/bin/python benchmarks/rolling_upgrade.py [--nodes 6]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(TOP, "lab", "labctl")
CLUSTER = "bench-upgrade"
DRIVER = """#!/bin/sh
# benchmark driver, version %d
case "$1" in
  init) printf '{"status":"Success","capabilities":{"attach":false}}' ;;
  *) printf '{"status":"Not supported"}' ;;
esac
"""
INSTALL = """
- name: Install version 1
  hosts: k8s_cluster
  gather_facts: false
  roles:
    - role: kubestorage.enablement.flexvolume
"""


def env(forks):
    e = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    e.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".cache", "collections"),
             ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
             ANSIBLE_FORKS=str(forks), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return e


def playbook(inventory, play, extra, forks=10):
    start = time.perf_counter()
    proc = subprocess.run(["ansible-playbook", "-i", inventory, play, "-e", json.dumps(extra)], env=env(forks),
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        sys.exit("%s failed (rc %d):\n%s" % (play, proc.returncode, proc.stdout[-4000:]))
    return elapsed, json.loads(proc.stdout[proc.stdout.index("{"):])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=6)
    args = parser.parse_args()
    n = args.nodes
    settings = [(1, 10), (2, 10), (3, 10), (n, 10), (n, 2)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for version in (1, 2):
            path = os.path.join(tmp, "driver-v%d" % version)
            with open(path, "w") as fh:
                fh.write(DRIVER % version)
            os.chmod(path, 0o755)
            sources.append(path)
        install = os.path.join(tmp, "install.yml")
        with open(install, "w") as fh:
            fh.write(INSTALL)
        nodes = ["w%d:worker:1.33" % i for i in range(1, n + 1)]
        inventory = subprocess.run([LABCTL, "--cluster", CLUSTER, "up", "--replace"] + nodes, check=True,
                                   stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
        try:
            def drivers(i):
                return [{"name": "bench~upgrade", "src": sources[i % 2]}]

            playbook(inventory, install, {"flexvolume_drivers": drivers(0)})
            upgrade = os.path.join(TOP, "playbooks", "upgrade.yml")
            for i, (serial, forks) in enumerate(settings, start=1):
                elapsed, data = playbook(inventory, upgrade, {"flexvolume_drivers": drivers(i),
                                                              "kubestorage_upgrade_serial": serial}, forks=forks)
                changed = sum(1 for stats in data["stats"].values() if stats["changed"])
                if changed != n:
                    sys.exit("serial %d: %d of %d nodes changed" % (serial, changed, n))
                rows.append((serial, forks, elapsed))
        finally:
            subprocess.run([LABCTL, "--cluster", CLUSTER, "down"], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    base = rows[0][2]
    print("upgrade.yml over %d nodes (canary first, then batches of `serial`)" % n)
    print("%6s %6s %9s %9s %9s" % ("serial", "forks", "total", "per node", "speed-up"))
    for serial, forks, elapsed in rows:
        print("%6d %6d %8.1fs %8.2fs %8.2fx" % (serial, forks, elapsed, elapsed / n, base / elapsed))


if __name__ == "__main__":
    main()
