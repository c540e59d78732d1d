# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two ansible-playbook runs against the same lab node at once, each installing its own version of
a FlexVolume driver and its own kubelet flags and KubeletConfiguration fields, several times over
so that the module runs interleave.

Afterwards the node is in one of the two requested states: the driver is version A or B, complete
and answering init; the shared flag and field hold A's or B's value; and the flag and field that
only one run sets are both there (neither run's edit was lost). Then kubelet restarts with those
files and the lab kubelet is healthy, running with them and with the driver loaded.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import DRIVER_OK, PLUGIN_DIR, TOP, ansible_env, write_driver

ROUNDS = 4
NODE = "w1"
RUNS = {
    # run: (shared flag value, own flag, shared config value, own config field)
    "a": ("race=a", ("max-pods", "110"), 110, ("eventRecordQPS", 7)),
    "b": ("race=b", ("read-only-port", "0"), 111, ("registryPullQPS", 9)),
}


def race_play(run, driver):
    shared_flag, own_flag, shared_field, own_field = RUNS[run]
    tasks = []
    for n in range(ROUNDS):
        tasks += [
            {"name": "driver %s, round %d" % (run, n),
             "kubestorage.enablement.flexvolume_driver": {"name": "race~flex", "src": driver}},
            {"name": "flags %s, round %d" % (run, n),
             "kubestorage.enablement.component_flags": {
                 "component": "kubelet", "backend": "env_file", "path": "/etc/default/kubelet",
                 "variable": "KUBELET_EXTRA_ARGS", "flags": {"node-labels": shared_flag, own_flag[0]: own_flag[1]}}},
            {"name": "config %s, round %d" % (run, n),
             "kubestorage.enablement.kubelet_config": {"settings": {"maxPods": shared_field, own_field[0]: own_field[1]}}},
        ]
    return [{"name": "race " + run, "hosts": NODE, "gather_facts": False, "tasks": tasks}]


def test_two_runs_at_once_end_in_one_requested_state_and_kubelet_is_healthy(lab):
    drivers = {run: write_driver(lab.workdir / ("race-" + run), DRIVER_OK.format(version="race " + run))
               for run in RUNS}
    procs = {}
    for run in RUNS:
        path = lab.workdir / ("race-%s.yml" % run)
        path.write_text(json.dumps(race_play(run, drivers[run])))
        procs[run] = subprocess.Popen(["ansible-playbook", "-i", lab.inventory, str(path)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=ansible_env())
    for run, proc in procs.items():
        out = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, "run %s failed: %s" % (run, out[-3000:])

    sums = {hashlib.sha256(Path(path).read_bytes()).hexdigest(): run for run, path in drivers.items()}
    installed = lab.sh(NODE, "sha256sum %s/race~flex/flex" % PLUGIN_DIR).split()[0]
    assert installed in sums, "the installed driver is neither A nor B"
    init = json.loads(lab.sh(NODE, "%s/race~flex/flex init" % PLUGIN_DIR))
    assert init["status"] == "Success"
    assert lab.sh(NODE, "find %s -name '*.ks-*'" % PLUGIN_DIR).strip() == "", "staging leftovers"

    env_file = lab.sh(NODE, "cat /etc/default/kubelet")
    assert env_file.count("KUBELET_EXTRA_ARGS=") == 1
    assert ("--node-labels=race=a" in env_file) != ("--node-labels=race=b" in env_file), env_file
    for run, (_shared, (flag, value), _field, _own) in RUNS.items():
        assert "--%s=%s" % (flag, value) in env_file, "run %s's --%s was lost: %s" % (run, flag, env_file)

    config = lab.sh(NODE, "cat /var/lib/kubelet/config.yaml")
    assert ("maxPods: 110" in config) != ("maxPods: 111" in config), config
    for run, (_shared, _flag, _field, (field, value)) in RUNS.items():
        assert "%s: %s" % (field, value) in config, "run %s's %s was lost: %s" % (run, field, config)

    lab.sh(NODE, "systemctl restart kubelet")
    deadline, state = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        state = json.loads(lab.sh(NODE, "cat /run/lab-kubelet/state.json", check=False) or "{}")
        if state.get("running") and any("race" in d for d in state.get("drivers", {})):
            break
        time.sleep(1)
    assert state.get("running"), "kubelet did not start: %s" % state.get("error")
    health = lab.sh(NODE, "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:10248/healthz').read().decode())\"")
    assert health.strip() == "ok"
    assert state["flags"]["node-labels"] in ("race=a", "race=b")
    assert state["config_file"] == "/var/lib/kubelet/config.yaml"   # parsed at startup, as kubelet does
    loaded = [d for name, d in state["drivers"].items() if "race" in name]
    assert loaded and loaded[0]["sha256"] == installed, state["drivers"]


# ---- the locks themselves, made to collide on purpose (host processes, no lab)

MODULES = "ansible_collections.kubestorage.enablement.plugins.modules."


def start_module(name, args):
    env = dict(os.environ, PYTHONPATH=str(TOP / ".cache" / "collections"))
    proc = subprocess.Popen([sys.executable, "-m", MODULES + name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc.stdin.close()
    return proc


def finish(proc):
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return json.loads(out)


def test_a_flag_edit_waits_for_the_other_writer_and_keeps_its_change(tmp_path):
    """component_flags and kubelet_config read the file only once the other writer is done, so
    the other writer's change (made while it held the lock) survives theirs."""
    from ansible_collections.kubestorage.enablement.plugins.module_utils.text_files import edit_lock

    env_file = tmp_path / "kubelet.env"
    env_file.write_text('KUBELET_EXTRA_ARGS="--v=2"\n')
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 110\n")
    with edit_lock(str(env_file)):
        flags = start_module("component_flags", {"component": "kubelet", "backend": "env_file", "path": str(env_file),
                                                 "flags": {"max-pods": "120"}, "kubernetes_version": "1.33"})
        settings = start_module("kubelet_config", {"path": str(config), "settings": {"registryPullQPS": 9},
                                                   "kubernetes_version": "1.33"})
        time.sleep(2)
        assert flags.poll() is None and settings.poll() is None, "a module did not wait for the lock"
        # The other writer's edits, made while it holds the lock:
        env_file.write_text('KUBELET_EXTRA_ARGS="--v=2 --node-labels=other=writer"\n')
        config.write_text(config.read_text() + "eventRecordQPS: 7\n")
    assert finish(flags)["changed"] and finish(settings)["changed"]
    assert env_file.read_text() == 'KUBELET_EXTRA_ARGS="--v=2 --node-labels=other=writer --max-pods=120"\n'
    assert "eventRecordQPS: 7" in config.read_text() and "registryPullQPS: 9" in config.read_text()


def test_a_driver_install_waits_for_the_plugin_dir_lock(tmp_path):
    from ansible_collections.kubestorage.enablement.plugins.module_utils.flexvolume import PluginDirLock

    plugin_dir = tmp_path / "exec"
    plugin_dir.mkdir()
    driver = write_driver(tmp_path / "driver", "#!/bin/sh\nprintf '{\"status\":\"Success\"}'\n")
    with PluginDirLock(str(plugin_dir)):
        proc = start_module("flexvolume_driver", {"name": "lock~flex", "remote_src": driver,
                                                  "plugin_dir": str(plugin_dir)})
        time.sleep(2)
        assert proc.poll() is None and not (plugin_dir / "lock~flex").exists(), "the install did not wait"
    result = finish(proc)
    assert result["changed"] and (plugin_dir / "lock~flex" / "flex").exists()
