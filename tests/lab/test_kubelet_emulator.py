"""Tests of the lab's kubelet emulator (lab/image/rootfs/usr/bin/kubelet).

The emulator runs on the host as a subprocess of this interpreter, with its state dir,
version and plugin dir redirected into pytest's tmp_path. Every daemon started by a test
is stopped by the `kubelet` fixture.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

EMULATOR = Path(__file__).resolve().parents[2] / "lab" / "image" / "rootfs" / "usr" / "bin" / "kubelet"
# The interpreter that runs the emulator; set it to /usr/bin/python3 to mimic the lab image.
PYTHON = os.environ.get("KUBELET_EMULATOR_PYTHON", sys.executable)
DEADLINE = 8.0

GOOD = """#!/bin/sh
echo '{"status":"Success","capabilities":{"attach":false}}'
"""
SILENT_ON_ATTACH = """#!/bin/sh
echo '{"status":"Success"}'
"""
NOISY = """#!/bin/sh
echo "jq: command not found" >&2
echo '{"status":"Success","capabilities":{"attach":false}}'
"""
NONZERO_SUCCESS = """#!/bin/sh
echo '{"status":"Success"}'
exit 3
"""
FAILURE = """#!/bin/sh
echo '{"status":"Failure","message":"jq is not installed"}'
exit 1
"""


# --------------------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(tmp_path, version="1.25"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBESTORAGE_LAB_")}
    env["KUBESTORAGE_LAB_STATE_DIR"] = str(tmp_path / "state")
    env["KUBESTORAGE_LAB_VERSION_FILE"] = str(tmp_path / "no-version-file")
    if version is not None:
        env["KUBESTORAGE_LAB_K8S_VERSION"] = version
    return env


def read_state(tmp_path):
    try:
        return json.loads((tmp_path / "state" / "state.json").read_text())
    except FileNotFoundError:
        return {}


def run_once(tmp_path, *args, version="1.25", env=None):
    """Run the emulator expecting it to exit by itself (killed after 10 s if it does not).

    Should it start after all, the default flags keep it off the host's plugin dir and port."""
    full_env = base_env(tmp_path, version)
    full_env.update(env or {})
    defaults = ["--volume-plugin-dir=%s" % (tmp_path / "plugins"), "--healthz-port=%d" % free_port()]
    return subprocess.run([PYTHON, str(EMULATOR), *defaults, *args], env=full_env,
                          capture_output=True, text=True, timeout=10, check=False)


def wait_for(predicate, what, timeout=DEADLINE):
    """Poll until predicate() is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def write_config(path, **fields):
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
    doc.update(fields)
    path.write_text(yaml.safe_dump(doc))
    return path


def install_driver(plugin_dir, dirname, script, atomic=True, mode=0o755):
    """Install <plugin_dir>/<dirname>/<driver>; atomic: build a hidden dir, then rename it in."""
    exe_name = dirname.split("~")[-1]
    build = plugin_dir / ("." + dirname + ".tmp") if atomic else plugin_dir / dirname
    build.mkdir()
    exe = build / exe_name
    exe.write_text(script)
    exe.chmod(mode)
    if atomic:
        os.rename(build, plugin_dir / dirname)
    return plugin_dir / dirname / exe_name


def write_atomic(path, text):
    tmp = path.parent / ("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Daemon:
    def __init__(self, tmp_path, args, version, env, defaults):
        self.tmp_path = tmp_path
        self.plugin_dir = tmp_path / "plugins"
        self.port = free_port()
        self.stderr_path = tmp_path / "kubelet.stderr"
        full_env = base_env(tmp_path, version)
        full_env.update(env or {})
        argv = [PYTHON, str(EMULATOR)]
        if defaults:   # keep the host's real paths and port 10248 out of the way
            argv += ["--volume-plugin-dir=%s" % self.plugin_dir, "--healthz-port=%d" % self.port]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv + list(args), env=full_env, stdout=subprocess.DEVNULL, stderr=err)

    def state(self):
        return read_state(self.tmp_path)

    def stderr(self):
        return self.stderr_path.read_text()

    def wait(self, predicate, what, timeout=DEADLINE):
        def check():
            assert self.proc.poll() is None or predicate(self.state()), \
                "kubelet exited (%s): %s" % (self.proc.returncode, self.stderr())
            return predicate(self.state())
        wait_for(check, what, timeout)
        return self.state()

    def wait_running(self):
        return self.wait(lambda s: s.get("running") and s.get("pid") == self.proc.pid, "running state")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def kubelet(tmp_path):
    """kubelet(*args, version=..., env=..., defaults=...) starts a daemon and waits until it runs.

    defaults: prepend --volume-plugin-dir=<tmp>/plugins and a free --healthz-port."""
    started = []

    def start(*args, version="1.25", env=None, wait=True, defaults=True):
        daemon = Daemon(tmp_path, args, version, env, defaults)
        started.append(daemon)
        if wait:
            daemon.wait_running()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def events(state, kind, driver):
    return [e for e in state.get("events", []) if e["event"] == kind and e["driver"] == driver]


# --------------------------------------------------------------------------- --version

def test_version_from_env(tmp_path):
    result = run_once(tmp_path, "--version", version="1.25")
    assert (result.returncode, result.stdout.strip()) == (0, "Kubernetes v1.25.0")
    assert read_state(tmp_path) == {}, "--version must not touch the state file"


def test_version_from_file_and_default(tmp_path):
    version_file = tmp_path / "kubernetes-version"
    version_file.write_text("v1.27.3\n")
    result = run_once(tmp_path, "--version", version=None, env={"KUBESTORAGE_LAB_VERSION_FILE": str(version_file)})
    assert (result.returncode, result.stdout.strip()) == (0, "Kubernetes v1.27.3")
    version_file.write_text("1.14\n")
    result = run_once(tmp_path, "--version", version=None, env={"KUBESTORAGE_LAB_VERSION_FILE": str(version_file)})
    assert result.stdout.strip() == "Kubernetes v1.14.0"
    result = run_once(tmp_path, "--version", version=None)
    assert result.stdout.strip() == "Kubernetes v1.33.0"


def test_version_answers_before_validation(tmp_path):
    result = run_once(tmp_path, "--no-such-flag", "--version", version="1.20.4")
    assert (result.returncode, result.stdout.strip()) == (0, "Kubernetes v1.20.4")


# --------------------------------------------------------------------------- flags

def test_unknown_flag_fails(tmp_path):
    result = run_once(tmp_path, "--no-such-flag=1")
    assert result.returncode == 1
    assert "failed to parse kubelet flag: unknown flag: --no-such-flag" in result.stderr
    state = read_state(tmp_path)
    assert state["running"] is False and state["exit_code"] == 1
    assert "unknown flag: --no-such-flag" in state["error"]


@pytest.mark.parametrize("flag,last_ok,first_removed", [
    ("--allow-privileged=true", "1.14", "1.15"),
    ("--network-plugin=cni", "1.23", "1.24"),
    ("--container-runtime=remote", "1.26", "1.27"),
])
def test_removed_flags(kubelet, tmp_path, flag, last_ok, first_removed):
    name = flag.split("=")[0]
    state = kubelet(flag, version=last_ok).wait_running()
    assert name[2:] in state["flags"]
    result = run_once(tmp_path, flag, version=first_removed)
    assert result.returncode == 1
    assert "failed to parse kubelet flag: unknown flag: %s" % name in result.stderr
    assert "unknown flag: %s" % name in read_state(tmp_path)["error"]


def test_pflag_forms(kubelet, tmp_path):
    state = kubelet("--node-labels", "zone=a", "-v", "4", "--fail-swap-on", "--register-node=false",
                    "--volume_plugin_dir=%s" % (tmp_path / "vp")).wait_running()
    flags = state["flags"]
    assert flags["node-labels"] == "zone=a"
    assert flags["v"] == 4
    assert flags["fail-swap-on"] is True and flags["register-node"] is False
    assert state["volume_plugin_dir"] == str(tmp_path / "vp")
    assert (tmp_path / "vp").is_dir(), "the plugin dir is created when missing"


@pytest.mark.parametrize("args,message", [
    (["--register-node", "false"], "unknown command false"),     # a bool flag takes no separate value
    (["--max-pods=many"], 'invalid argument "many" for "--max-pods" flag'),
    (["--kubeconfig"], "flag needs an argument: --kubeconfig"),
    (["--feature-gates=CSIMigration"], 'invalid argument "CSIMigration" for "--feature-gates" flag: '
                                       'malformed pair, expect string=bool'),
    (["-kubeconfig=x"], "unknown shorthand flag: 'k' in -kubeconfig=x"),
])
def test_bad_command_lines(tmp_path, args, message):
    result = run_once(tmp_path, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert message in read_state(tmp_path)["error"]


# --------------------------------------------------------------------------- feature gates

def test_removed_gate_flag_fails(tmp_path):
    result = run_once(tmp_path, "--feature-gates=CSIPersistentVolume=true", version="1.25")
    assert result.returncode == 1
    expected = "failed to set feature gates from initial flags-based config: unrecognized feature gate: CSIPersistentVolume"
    assert expected in result.stderr
    state = read_state(tmp_path)
    assert state["running"] is False and state["exit_code"] == 1 and state["version"] == "v1.25.0"
    assert expected in state["error"]


def test_gate_accepted_while_alpha_or_beta(kubelet):
    state = kubelet("--feature-gates=CSIPersistentVolume=true,MountPropagation=true",
                    "--feature-gates=MountPropagation=false", version="1.10").wait_running()
    assert state["feature_gates"] == {"CSIPersistentVolume": True, "MountPropagation": False}
    assert state["warnings"] == []


def test_gate_too_new_for_version(tmp_path):
    result = run_once(tmp_path, "--feature-gates=CSIInlineVolume=true", version="1.14")
    assert "unrecognized feature gate: CSIInlineVolume" in result.stderr and result.returncode == 1


def test_removed_gate_from_config_file(tmp_path):
    config = write_config(tmp_path / "config.yaml", featureGates={"ExpandCSIVolumes": True})
    result = run_once(tmp_path, "--config=%s" % config, version="1.27")
    assert result.returncode == 1
    assert "unrecognized feature gate: ExpandCSIVolumes" in result.stderr
    assert "unrecognized feature gate: ExpandCSIVolumes" in read_state(tmp_path)["error"]


def test_locked_ga_gate_false_fails(tmp_path):
    result = run_once(tmp_path, "--feature-gates=MountPropagation=false", version="1.12")
    assert result.returncode == 1
    assert "cannot set feature gate MountPropagation to false, feature is locked to true" in result.stderr


def test_ga_gate_true_warns(kubelet):
    daemon = kubelet("--feature-gates=MountPropagation=true", version="1.12")
    warning = "Setting GA feature gate MountPropagation=true. It will be removed in a future release."
    assert warning in daemon.wait_running()["warnings"]
    assert warning in daemon.stderr()


def test_local_storage_capacity_isolation_removed_in_1_27(kubelet, tmp_path):
    state = kubelet("--feature-gates=LocalStorageCapacityIsolation=true", version="1.26").wait_running()
    assert state["feature_gates"] == {"LocalStorageCapacityIsolation": True}
    result = run_once(tmp_path, "--feature-gates=LocalStorageCapacityIsolation=true", version="1.27")
    assert "unrecognized feature gate: LocalStorageCapacityIsolation" in result.stderr


def test_flag_gates_override_config_gates(kubelet, tmp_path):
    config = write_config(tmp_path / "config.yaml", featureGates={"CSIMigration": False, "NodeSwap": True})
    state = kubelet("--config=%s" % config, "--feature-gates=CSIMigration=true", version="1.24").wait_running()
    assert state["feature_gates"] == {"CSIMigration": True, "NodeSwap": True}


# --------------------------------------------------------------------------- config file, healthz, signals

@pytest.mark.parametrize("content,message", [
    ({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeProxyConfiguration"}, 'no kind "KubeProxyConfiguration"'),
    ({"apiVersion": "v1", "kind": "KubeletConfiguration"}, 'registered for version "v1"'),
    ("kind: [unclosed", "failed to decode: yaml:"),
    ("", "was empty"),
])
def test_bad_config_file(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    result = run_once(tmp_path, "--config", str(path))
    prefix = "failed to load kubelet config file, path: %s, error: " % path
    assert result.returncode == 1
    assert prefix in result.stderr and message in result.stderr
    assert read_state(tmp_path)["error"].startswith(prefix)


def test_missing_config_file(tmp_path):
    result = run_once(tmp_path, "--config=%s" % (tmp_path / "nope.yaml"))
    assert "no such file or directory" in result.stderr and result.returncode == 1


def test_healthz_and_config_values(kubelet, tmp_path):
    port = free_port()
    config = write_config(tmp_path / "config.yaml", healthzPort=port, healthzBindAddress="127.0.0.1",
                          volumePluginDir=str(tmp_path / "from-config"))
    daemon = kubelet("--config=%s" % config, defaults=False)
    state = daemon.wait_running()
    assert state["healthz"] == "127.0.0.1:%d" % port
    assert state["volume_plugin_dir"] == str(tmp_path / "from-config")

    def healthz():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1) as resp:
                return resp.status, resp.read().decode()
        except OSError:
            return None
    assert wait_for(healthz, "healthz") == (200, "ok")


def test_flag_overrides_config_plugin_dir(kubelet, tmp_path):
    config = write_config(tmp_path / "config.yaml", volumePluginDir=str(tmp_path / "from-config"))
    state = kubelet("--config=%s" % config, "--volume-plugin-dir=%s" % (tmp_path / "from-flag"),
                    "--healthz-port=%d" % free_port(), defaults=False).wait_running()
    assert state["volume_plugin_dir"] == str(tmp_path / "from-flag")
    assert (tmp_path / "from-flag").is_dir() and not (tmp_path / "from-config").exists()


def test_sigterm_records_stop(kubelet):
    daemon = kubelet()
    assert daemon.stop() == 0
    state = daemon.state()
    assert state["running"] is False and state["exit_code"] == 0
    leftovers = [p.name for p in (daemon.tmp_path / "state").iterdir() if p.name != "state.json"]
    assert leftovers == [], "state.json is written through a temp file that must not stay behind"


# --------------------------------------------------------------------------- FlexVolume prober

def test_good_driver_loads(kubelet, tmp_path):
    daemon = kubelet()
    exe = install_driver(daemon.plugin_dir, "acme~good", GOOD)
    state = daemon.wait(lambda s: "acme/good" in s["drivers"], "acme/good to load")
    driver = state["drivers"]["acme/good"]
    assert driver["sha256"] == sha256(exe) and driver["executable"] == str(exe)
    assert driver["capabilities"] == {"attach": False, "selinuxRelabel": True, "supportsMetrics": False,
                                      "fsGroup": True, "requiresFSResize": True}
    assert driver["init"] == {"status": "Success", "capabilities": {"attach": False}}
    assert len(events(state, "loaded", "acme/good")) == 1
    assert state["probe_errors"] == []


def test_driver_without_attach_is_attachable(kubelet, tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    install_driver(plugin_dir, "lvm", SILENT_ON_ATTACH)     # dir without "~": <dir>/<dir>
    state = kubelet().wait(lambda s: "lvm" in s["drivers"], "lvm to load at startup")
    assert state["drivers"]["lvm"]["capabilities"]["attach"] is True
    assert state["probes"] >= 1


@pytest.mark.parametrize("script,mode,message", [
    (NOISY, 0o755, "invalid character 'j' looking for beginning of value"),
    (NONZERO_SUCCESS, 0o755, "exec error (exit status 3) but no error in response"),
    (FAILURE, 0o755, "init command failed, status: Failure, reason: jq is not installed"),
    (GOOD, 0o644, "permission denied"),
])
def test_broken_driver_is_skipped(kubelet, script, mode, message):
    daemon = kubelet()
    install_driver(daemon.plugin_dir, "acme~broken", script, mode=mode)
    path = str(daemon.plugin_dir / "acme~broken")
    state = daemon.wait(lambda s: any(e["dir"] == path for e in s["probe_errors"]), "a probe error")
    errors = [e["error"] for e in state["probe_errors"] if e["dir"] == path]
    assert message in errors[-1]
    assert "acme/broken" not in state["drivers"]
    assert events(state, "error", "acme/broken")
    assert "error creating Flexvolume plugin from directory %s, skipping" % path in daemon.stderr()


def test_hung_init_times_out_and_is_killed(kubelet, tmp_path):
    pid_file = tmp_path / "driver.pid"
    daemon = kubelet(env={"KUBESTORAGE_LAB_FLEX_INIT_TIMEOUT": "0.5"})
    install_driver(daemon.plugin_dir, "acme~hang", "#!/bin/sh\necho $$ > %s\nexec sleep 30\n" % pid_file)
    state = daemon.wait(lambda s: s["failing_dirs"], "init to time out")
    assert "timeout" in state["failing_dirs"][str(daemon.plugin_dir / "acme~hang")]
    pid = int(pid_file.read_text())

    def gone():
        try:
            return Path("/proc/%d/stat" % pid).read_text().split()[2] == "Z"
        except FileNotFoundError:
            return True
    wait_for(gone, "the hung driver to be killed")


def test_dir_without_executable(kubelet):
    daemon = kubelet()
    (daemon.plugin_dir / "acme~empty").mkdir()
    path = str(daemon.plugin_dir / "acme~empty")
    state = daemon.wait(lambda s: path in s["failing_dirs"], "empty dir to fail")
    assert "no such file or directory" in state["failing_dirs"][path]
    assert "unexpected end of JSON input" in state["failing_dirs"][path]
    assert state["drivers"] == {}


def test_invalid_driver_name(kubelet):
    daemon = kubelet()
    install_driver(daemon.plugin_dir, "Acme~x", GOOD)
    path = str(daemon.plugin_dir / "Acme~x")
    state = daemon.wait(lambda s: path in s["failing_dirs"], "invalid name to fail")
    assert "invalid name" in state["failing_dirs"][path] and "Acme/x" not in state["drivers"]


def test_hidden_dirs_and_plain_files_are_ignored(kubelet, tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    install_driver(plugin_dir, ".acme~x", GOOD, atomic=False)
    (plugin_dir / "README").write_text("not a driver\n")
    daemon = kubelet()
    probes = daemon.state()["probes"]
    install_driver(plugin_dir, ".acme~late", GOOD, atomic=False)
    (plugin_dir / ".hidden-file").write_text("x")
    time.sleep(0.3)   # a negative check needs some time: nothing may react to hidden paths
    assert daemon.state()["probes"] == probes
    install_driver(plugin_dir, "acme~good", GOOD)            # forces further probes
    state = daemon.wait(lambda s: "acme/good" in s["drivers"], "acme/good to load")
    assert sorted(state["drivers"]) == ["acme/good"]
    assert state["probe_errors"] == [] and state["failing_dirs"] == {}


def test_atomic_upgrade_gives_updated_event(kubelet):
    daemon = kubelet()
    exe = install_driver(daemon.plugin_dir, "acme~drv", GOOD)
    daemon.wait(lambda s: "acme/drv" in s["drivers"], "first version")
    hidden = exe.parent / ".drv"
    hidden.write_text(SILENT_ON_ATTACH)
    hidden.chmod(0o755)
    os.rename(hidden, exe)
    new_sha = sha256(exe)
    state = daemon.wait(lambda s: s["drivers"].get("acme/drv", {}).get("sha256") == new_sha, "upgrade")
    updated = events(state, "updated", "acme/drv")
    assert [e["sha256"] for e in updated] == [new_sha]
    assert state["drivers"]["acme/drv"]["capabilities"]["attach"] is True
    assert state["probe_errors"] == []


def test_in_place_rewrite_is_probed_as_partial_file(kubelet):
    """Writing the executable in place (no hidden file + rename) exposes a partial state."""
    daemon = kubelet()
    (daemon.plugin_dir / "acme~slow").mkdir()
    path = str(daemon.plugin_dir / "acme~slow")
    daemon.wait(lambda s: path in s["failing_dirs"], "probe of the empty driver dir")
    exe = daemon.plugin_dir / "acme~slow" / "slow"
    exe.write_text(GOOD)
    exe.chmod(0o755)
    state = daemon.wait(lambda s: "acme/slow" in s["drivers"], "driver to load in the end")
    assert any(e["dir"] == path for e in state["probe_errors"])


def test_removed_driver_is_unloaded(kubelet):
    daemon = kubelet()
    install_driver(daemon.plugin_dir, "acme~gone", GOOD)
    daemon.wait(lambda s: "acme/gone" in s["drivers"], "driver to load")
    shutil.rmtree(daemon.plugin_dir / "acme~gone")
    state = daemon.wait(lambda s: "acme/gone" not in s["drivers"] and not s["failing_dirs"], "driver to go")
    assert len(events(state, "unloaded", "acme/gone")) == 1


def test_driver_dir_renamed_away_then_reinstalled_in_place(kubelet):
    """A dir renamed to a hidden name loses its meaning; a new dir of the same name is watched."""
    daemon = kubelet()
    install_driver(daemon.plugin_dir, "acme~x", GOOD)
    daemon.wait(lambda s: "acme/x" in s["drivers"], "first install")
    os.rename(daemon.plugin_dir / "acme~x", daemon.plugin_dir / ".acme~x.old")
    daemon.wait(lambda s: "acme/x" not in s["drivers"], "rename away to unload")
    (daemon.plugin_dir / "acme~x").mkdir()
    path = str(daemon.plugin_dir / "acme~x")
    daemon.wait(lambda s: path in s["failing_dirs"], "probe of the new, still empty dir")
    exe = daemon.plugin_dir / "acme~x" / "x"      # only the new dir's own watch can see this
    exe.write_text(SILENT_ON_ATTACH)
    exe.chmod(0o755)
    state = daemon.wait(lambda s: "acme/x" in s["drivers"], "in-place reinstall to load")
    assert state["drivers"]["acme/x"]["capabilities"]["attach"] is True
    assert [e["event"] for e in state["events"] if e["driver"] == "acme/x"][:2] == ["loaded", "unloaded"]


# --------------------------------------------------------------------------- static pods

def manifest(component, tag, command_flags, mounts=(), host_volumes=()):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": component, "namespace": "kube-system"},
        "spec": {
            "containers": [{
                "name": component, "image": "registry.k8s.io/%s:%s" % (component, tag),
                "command": [component] + list(command_flags),
                "volumeMounts": [{"name": n, "mountPath": p} for n, p in mounts],
            }],
            "volumes": [{"name": n, "hostPath": {"path": p, "type": "DirectoryOrCreate"}} for n, p in host_volumes],
        },
    }


def test_static_pod_with_removed_gate_crashloops(kubelet, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "kube-apiserver.yaml").write_text(yaml.safe_dump(
        manifest("kube-apiserver", "v1.25.3", ["--allow-privileged=true"])))
    config = write_config(tmp_path / "config.yaml", staticPodPath=str(manifests))
    daemon = kubelet("--config=%s" % config)
    state = daemon.wait(lambda s: "kube-apiserver.yaml" in s["static_pods"], "apiserver pod")
    pod = state["static_pods"]["kube-apiserver.yaml"]
    assert (pod["component"], pod["version"], pod["status"]) == ("kube-apiserver", "v1.25.3", "Running")

    write_atomic(manifests / "kube-controller-manager.yaml", yaml.safe_dump(manifest(
        "kube-controller-manager", "v1.25.3", ["--feature-gates=CSIPersistentVolume=true,ExpandCSIVolumes=true"])))
    state = daemon.wait(lambda s: "kube-controller-manager.yaml" in s["static_pods"], "kcm pod")
    pod = state["static_pods"]["kube-controller-manager.yaml"]
    assert pod["status"] == "CrashLoopBackOff"
    assert "unrecognized feature gate: CSIPersistentVolume" in pod["error"]
    assert pod["feature_gates"] == {"CSIPersistentVolume": True, "ExpandCSIVolumes": True}

    (manifests / "broken.yaml").write_text("spec: [\n")
    state = daemon.wait(lambda s: "broken.yaml" in s["static_pods"], "broken manifest")
    assert state["static_pods"]["broken.yaml"]["status"] == "Invalid"


def test_controller_manager_flex_dir_mount(kubelet, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    daemon = kubelet("--pod-manifest-path=%s" % manifests)
    default_dir = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
    flex = "/var/lib/kubelet/volumeplugins"
    unmounted = manifest("kube-controller-manager", "v1.25.3", ["--flex-volume-plugin-dir=%s" % flex],
                         mounts=[("flexvolume-dir", default_dir)], host_volumes=[("flexvolume-dir", default_dir)])
    write_atomic(manifests / "kube-controller-manager.yaml", yaml.safe_dump(unmounted))
    state = daemon.wait(lambda s: "kube-controller-manager.yaml" in s["static_pods"], "kcm pod")
    pod = state["static_pods"]["kube-controller-manager.yaml"]
    assert pod["warnings"] == ["flex-volume-plugin-dir %s is not mounted from the host" % flex]
    assert pod["host_paths"] == [default_dir] and pod["status"] == "Running"
    assert pod["flags"]["flex-volume-plugin-dir"] == flex

    mounted = manifest("kube-controller-manager", "v1.25.3", ["--flex-volume-plugin-dir=%s" % flex],
                       mounts=[("flexvolume-dir", flex)], host_volumes=[("flexvolume-dir", flex)])
    write_atomic(manifests / "kube-controller-manager.yaml", yaml.safe_dump(mounted))
    state = daemon.wait(lambda s: s["static_pods"].get("kube-controller-manager.yaml", {}).get("host_paths") == [flex],
                        "kcm pod to be re-read")
    assert state["static_pods"]["kube-controller-manager.yaml"]["warnings"] == []
    assert state["static_pods"]["kube-controller-manager.yaml"]["restarts"] == 1


POD_RUNNER = EMULATOR.parents[1] / "libexec" / "lab-kubelet" / "static-pod"


def cmdline(pid):
    try:
        return (Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0"))[:-1]
    except OSError:
        return None


def https_health(port, path="/healthz"):
    import ssl
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path), context=context, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError as exc:
        return None, str(exc)


def test_running_static_pods_get_a_process_that_serves_health(kubelet, tmp_path):
    """A Running pod has a process whose command line ends with the container's command and
    serves HTTPS health on --secure-port; a changed manifest restarts it, a refused gate stops it."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    env = {"KUBESTORAGE_LAB_POD_RUNNER": str(POD_RUNNER), "KUBESTORAGE_LAB_PKI_DIR": str(tmp_path / "pki")}
    daemon = kubelet("--pod-manifest-path=%s" % manifests, env=env)
    port = free_port()
    command = ["--secure-port=%d" % port, "--bind-address=127.0.0.1"]
    write_atomic(manifests / "kube-controller-manager.yaml",
                 yaml.safe_dump(manifest("kube-controller-manager", "v1.25.3", command)))
    state = daemon.wait(lambda s: (s["static_pods"].get("kube-controller-manager.yaml") or {}).get("pid"), "kcm process")
    first = state["static_pods"]["kube-controller-manager.yaml"]["pid"]
    expected = [b"kube-controller-manager"] + [c.encode() for c in command]
    assert cmdline(first)[-len(expected):] == expected
    assert wait_for(lambda: https_health(port)[0] == 200, "kcm healthz")
    assert https_health(port, "/nothing")[0] is None or https_health(port, "/nothing")[0] != 200

    changed = command + ["--flex-volume-plugin-dir=/var/lib/kubelet/volumeplugins"]
    write_atomic(manifests / "kube-controller-manager.yaml",
                 yaml.safe_dump(manifest("kube-controller-manager", "v1.25.3", changed)))
    state = daemon.wait(lambda s: s["static_pods"]["kube-controller-manager.yaml"].get("pid") not in (None, first),
                        "kcm restarted")
    second = state["static_pods"]["kube-controller-manager.yaml"]["pid"]
    assert cmdline(first) is None or b"kube-controller-manager" not in cmdline(first)
    assert cmdline(second)[-1] == b"--flex-volume-plugin-dir=/var/lib/kubelet/volumeplugins"
    assert wait_for(lambda: https_health(port)[0] == 200, "kcm healthz after the restart")

    refused = changed + ["--feature-gates=CSIPersistentVolume=true"]
    write_atomic(manifests / "kube-controller-manager.yaml",
                 yaml.safe_dump(manifest("kube-controller-manager", "v1.25.3", refused)))
    state = daemon.wait(lambda s: s["static_pods"]["kube-controller-manager.yaml"]["status"] == "CrashLoopBackOff",
                        "kcm crashloop")
    assert state["static_pods"]["kube-controller-manager.yaml"]["pid"] is None
    assert wait_for(lambda: https_health(port)[0] is None, "kcm healthz to go away")

    assert daemon.stop() == 0
    assert cmdline(second) is None or b"kube-controller-manager" not in cmdline(second)
