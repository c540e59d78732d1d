# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash safety of flexvolume_driver: the module is SIGKILLed right before each of its changes to
the filesystem in turn (crash_module.py), during a first install, an upgrade, a refused upgrade
and a removal of a 3 MB driver.

After every kill the driver's dir holds a complete driver that answers init the way kubelet calls
it: the old one or the new one (or, for a first install and a removal, no driver dir at all), never a
partial file. Then the same task runs again without the kill and converges: the requested
version is in place, no hidden leftovers remain, and a further run reports no change.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DRIVER_FAILING, DRIVER_OK

HERE = Path(__file__).resolve().parent
COLLECTIONS = HERE.parents[1] / ".cache" / "collections"
NAME = "crash~flex"
PADDING_MB = 3   # several 1 MB writes: kill points inside the copy too


def make_driver(path, text):
    with open(path, "w") as fh:
        fh.write(text)
        for _line in range(PADDING_MB * 1024):
            fh.write("#" + "x" * 1022 + "\n")
    os.chmod(path, 0o755)
    return path


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def run_module(args, kill_at=0, count_file=None):
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": args})
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run([sys.executable, str(HERE / "crash_module.py"), "flexvolume_driver", str(kill_at),
                           str(count_file or os.devnull)], input=payload, capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    result = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, result


def probe(path):
    """Call the driver as kubelet does; its parsed status."""
    out = subprocess.run([path, "init"], capture_output=True, text=True, timeout=10, check=False).stdout
    return json.loads(out)


def hidden_leftovers(plugin_dir):
    found = []
    for root, dirs, files in os.walk(plugin_dir):
        for entry in dirs + files:
            if ".ks-" in entry:
                found.append(os.path.join(root, entry))
    return found


@pytest.fixture
def drivers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return {
        "v1": make_driver(str(src / "v1"), DRIVER_OK.format(version=1)),
        "v2": make_driver(str(src / "v2"), DRIVER_OK.format(version=2)),
        "broken": make_driver(str(src / "broken"), DRIVER_FAILING),
    }


SCENARIOS = {
    # name: (installed before, task, states allowed after a kill, state after the next run, next run fails)
    "install": (None, {"remote_src": "v1"}, {None, "v1"}, "v1", False),
    "upgrade": ("v1", {"remote_src": "v2"}, {"v1", "v2"}, "v2", False),
    "refused upgrade": ("v1", {"remote_src": "broken"}, {"v1"}, "v1", True),
    "remove": ("v1", {"state": "absent"}, {None, "v1"}, None, False),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_kill_at_every_change_leaves_a_complete_driver_and_the_next_run_converges(scenario, drivers, tmp_path):
    before, task, allowed, final, next_fails = SCENARIOS[scenario]
    checksums = {sha256(path): version for version, path in drivers.items()}
    task = {k: drivers.get(v, v) for k, v in task.items()}

    def fresh_dir(label):
        plugin_dir = tmp_path / label
        plugin_dir.mkdir()
        args = {"name": NAME, "plugin_dir": str(plugin_dir), "keep_backups": 2}
        if before:
            rc, result = run_module(dict(args, remote_src=drivers[before]))
            assert rc == 0 and result["changed"], result
        return plugin_dir, dict(args, **task)

    def installed(plugin_dir):
        exe = plugin_dir / "crash~flex" / "flex"
        if not exe.exists():
            assert not (plugin_dir / "crash~flex").exists(), "a driver dir without its executable"
            return None
        version = checksums.get(sha256(exe))
        assert version, "%s holds a partial or unknown file" % exe
        assert os.access(exe, os.X_OK), "%s is not executable" % exe
        status = probe(str(exe))
        assert status["status"] == ("Failure" if version == "broken" else "Success"), status
        return version

    plugin_dir, args = fresh_dir("count")
    count_file = tmp_path / "changes.txt"
    rc, result = run_module(args, count_file=count_file)
    assert (rc != 0) == next_fails, result
    changes = int(count_file.read_text())
    assert changes >= 3, "too few kill points (%d): is the harness counting?" % changes
    assert installed(plugin_dir) == final

    for kill_at in range(1, changes + 1):
        plugin_dir, args = fresh_dir("kill-%03d" % kill_at)
        rc, result = run_module(args, kill_at=kill_at)
        # The last kill points come after the result was printed (the module's temp dir is removed at exit).
        assert rc == -9, "kill %d/%d did not happen: %s" % (kill_at, changes, result)
        state = installed(plugin_dir)
        assert state in allowed, "after kill %d/%d the driver is %s, expected one of %s" % (
            kill_at, changes, state, allowed)
        rc, result = run_module(args)
        assert (rc != 0) == next_fails, "run after kill %d: %s" % (kill_at, result)
        if next_fails:
            assert "Nothing was changed" in result["msg"], result["msg"]
        assert installed(plugin_dir) == final, "run after kill %d did not converge" % kill_at
        assert hidden_leftovers(str(plugin_dir)) == [], "leftovers after the run that followed kill %d" % kill_at
        rc, result = run_module(args)
        assert (rc != 0) == next_fails and not result.get("changed"), "second run after kill %d: %s" % (kill_at, result)

    print("\n%s: %d kills survived" % (scenario, changes))
