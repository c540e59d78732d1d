"""Benchmark: re-running flexvolume_driver with a large driver costs what a small one costs.

Starts one lab node (cluster 'bench'), then in one run measures ansible-playbook wall time for:
first install and no-op re-run of a 10 KB driver, and of a large driver (default 100 MB).
Prints the ratios and whether the action plugin sent the file. Usage (from the repo root,
after `make setup lab-image`):  .venv/bin/python benchmarks/large_driver_noop.py [--mb 100]
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
PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - kubestorage.enablement.flexvolume_driver:
        name: bench~{name}
        src: {src}
      register: r
    - ansible.builtin.debug:
        msg: "RESULT {{{{ {{'changed': r.changed, 'transferred': r.transferred}} | to_json }}}}"
"""


def make_driver(path, size):
    body = '#!/bin/sh\nprintf \'{"status":"Success","capabilities":{"attach":false}}\'\nexit 0\n'
    with open(path, "w") as fh:
        fh.write(body)
        pad = "# " + "x" * 1021 + "\n"
        while fh.tell() < size:
            fh.write(pad)
    os.chmod(path, 0o755)


def run(inventory, play_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, ".cache", "collections"),
               ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    start = time.perf_counter()
    out = subprocess.run(["ansible-playbook", "-i", inventory, play_path], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    elapsed = time.perf_counter() - start
    line = [ln for ln in out.splitlines() if "RESULT " in ln][0]
    return elapsed, json.loads(line.split("RESULT ", 1)[1].strip().strip("'\""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    inventory = subprocess.run([LABCTL, "--cluster", "bench", "up", "--replace", "b1:worker:1.33"], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = {}
            for label, size in (("small", 10 * 1024), ("large", args.mb * 1024 * 1024)):
                src = os.path.join(tmp, label)
                make_driver(src, size)
                play = os.path.join(tmp, "play-%s.yml" % label)
                with open(play, "w") as fh:
                    fh.write(PLAY.format(name=label, src=src))
                rows[label] = [run(inventory, play), run(inventory, play)]
        for label, ((t1, r1), (t2, r2)) in rows.items():
            print("%-5s install %6.2fs changed=%s transferred=%s | re-run %6.2fs changed=%s transferred=%s"
                  % (label, t1, r1["changed"], r1["transferred"], t2, r2["changed"], r2["transferred"]))
        small_noop, large_noop = rows["small"][1][0], rows["large"][1][0]
        print("no-op re-run, large (%d MB) / small (10 KB): %.2f" % (args.mb, large_noop / small_noop))
        print("large driver, install / no-op re-run: %.2f" % (rows["large"][0][0] / large_noop))
        ok = not rows["large"][1][1]["transferred"] and not rows["large"][1][1]["changed"]
        return 0 if ok else 1
    finally:
        subprocess.run([LABCTL, "--cluster", "bench", "down"], check=False, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
