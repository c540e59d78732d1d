"""Benchmark: what a second, no-op run of playbooks/site.yml costs, next to the floor.

For each N in --nodes (default 3 and 6) it starts N lab nodes (cluster 'bench-noop': one control
plane on 1.33, workers alternating 1.33 and 1.25), converges them with site.yml and the demo's
FlexVolume driver, then measures in the same run:
  - site.yml again (must report changed=0 on every host),
  - the floor: a play with one ansible.builtin.ping task on the same hosts,
and prints wall times, their ratio, the task results per host (how many tasks ran on the node,
how many were skipped or ran on the controller only) and the slowest tasks of the no-op run.
Usage (from the repo root, after `make setup lab-image`):
    .venv/bin/python benchmarks/noop_rerun.py [--nodes 3 6] [--repeat 2]
"""
import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(TOP, "lab", "labctl")
CLUSTER = "bench-noop"
PING = """
- name: Floor
  hosts: k8s_cluster
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""
# Modules that run on the controller only (no round trip to the node).
LOCAL_ACTIONS = {"set_fact", "assert", "debug", "meta", "include_tasks", "include_role", "fail",
                 "validate_argument_spec"}


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    e.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".cache", "collections"),
             ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return e


def playbook(inventory, play, extra):
    start = time.perf_counter()
    proc = subprocess.run(["ansible-playbook", "-i", inventory, play, "-e", json.dumps(extra)], env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        sys.exit("%s failed (rc %d):\n%s\n%s" % (play, proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    return elapsed, json.loads(proc.stdout[proc.stdout.index("{"):])


def task_stats(data):
    """Per host: task results that went to the node, stayed on the controller, or were skipped (a loop
    counts once per item); and the summed duration of each task."""
    per_host = collections.defaultdict(collections.Counter)
    durations = collections.Counter()
    parse = datetime.datetime.fromisoformat
    for play in data["plays"]:
        for task in play["tasks"]:
            dur = task["task"].get("duration", {})
            if dur.get("start") and dur.get("end"):
                durations[task["task"]["name"]] += (parse(dur["end"].rstrip("Z")) - parse(dur["start"].rstrip("Z"))
                                                    ).total_seconds()
            for host, result in task["hosts"].items():
                short = result.get("action", "").rsplit(".", 1)[-1]
                for item in result.get("results") or [result]:
                    if item.get("skipped") or result.get("skipped"):
                        per_host[host]["skipped"] += 1
                    elif short in LOCAL_ACTIONS:
                        per_host[host]["controller"] += 1
                    else:
                        per_host[host]["node"] += 1
    return per_host, durations


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--repeat", type=int, default=2, help="measured runs of each play (the best is reported)")
    args = parser.parse_args()
    extra = {"flexvolume_drivers": [{"name": "kubestorage~hostdir", "src": "hostdir", "requires": ["jq"],
                                     "required_capabilities": {"attach": False}}], "csi_drivers": []}
    site = os.path.join(TOP, "playbooks", "site.yml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ping = os.path.join(tmp, "ping.yml")
        with open(ping, "w") as fh:
            fh.write(PING)
        try:
            for n in args.nodes:
                nodes = ["cp1:control-plane:1.33"] + ["w%d:worker:%s" % (i, "1.33" if i % 2 else "1.25")
                                                      for i in range(1, n)]
                inventory = subprocess.run([LABCTL, "--cluster", CLUSTER, "up", "--replace"] + nodes, check=True,
                                           stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
                playbook(inventory, site, extra)                       # converge
                noop, one_batch, floor, data = [], [], [], None
                for _attempt in range(args.repeat):
                    elapsed, data = playbook(inventory, site, extra)
                    changed = {h: s["changed"] for h, s in data["stats"].items() if s["changed"]}
                    if changed:
                        sys.exit("the second site.yml run changed something: %s" % changed)
                    noop.append(elapsed)
                    one_batch.append(playbook(inventory, site, dict(extra, kubestorage_node_serial="100%"))[0])
                    floor.append(playbook(inventory, ping, {})[0])
                per_host, durations = task_stats(data)
                rows.append((n, min(noop), min(one_batch), min(floor), per_host, durations))
        finally:
            subprocess.run([LABCTL, "--cluster", CLUSTER, "down"], check=False, stderr=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
    print("no-op site.yml: default batches (kubestorage_node_serial 30%) and one batch (100%); floor: one ping task")
    print("N  30% batches  100% batch  ping floor  ratio 30%  ratio 100%  task results per host "
          "(node / controller / skipped)")
    for n, t_noop, t_one, t_floor, per_host, _durations in rows:
        cp, worker = per_host.get("cp1", {}), per_host.get("w1", {})
        print("%-2d %10.1fs %10.1fs %10.1fs %9.1f %11.1f  control plane %d/%d/%d, worker %d/%d/%d" % (
            n, t_noop, t_one, t_floor, t_noop / t_floor, t_one / t_floor, cp.get("node", 0), cp.get("controller", 0),
            cp.get("skipped", 0), worker.get("node", 0), worker.get("controller", 0), worker.get("skipped", 0)))
    print("\nslowest tasks of the no-op run (N=%d, default batches, summed over batches):" % rows[-1][0])
    for name, seconds in rows[-1][5].most_common(8):
        print("  %6.2fs  %s" % (seconds, name))


if __name__ == "__main__":
    main()
