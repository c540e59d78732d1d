# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a node's kubelet and container runtime are set up, read from files only.

Plain functions over a root directory (default /) so unit tests can build fake nodes in a
temp dir. Layouts (upstream facts, section 3):
- kubeadm: kubelet.service + 10-kubeadm.conf drop-in, /var/lib/kubelet/kubeadm-flags.env,
  /etc/default/kubelet (Debian) or /etc/sysconfig/kubelet (RHEL), /var/lib/kubelet/config.yaml;
- kubespray: /etc/kubernetes/kubelet.env and /etc/kubernetes/kubelet-config.yaml;
- k3s / rke2: /etc/rancher/<k3s|rke2>/config.yaml with kubelet-arg;
- plain: a kubelet.service without any of these.
"""

from __future__ import annotations

import os
import re

KUBEADM_DROPINS = (
    "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
)
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
RUNTIME_UNITS = ("containerd", "docker", "crio")


def _path(root, rel):
    return os.path.join(root, rel)


def _first(root, candidates):
    for rel in candidates:
        if os.path.isfile(_path(root, rel)):
            return "/" + rel
    return None


def unit_file(root, unit):
    """The unit file of <unit>.service, or None."""
    return _first(root, ["%s/%s.service" % (d, unit) for d in UNIT_DIRS])


def unit_setting(root, unit, key):
    """The last value of key= in the unit file and its drop-ins (systemd's order), or None."""
    files = []
    main = unit_file(root, unit)
    if main:
        files.append(_path(root, main.lstrip("/")))
    dropins = {}
    for d in reversed(UNIT_DIRS):  # later dirs override earlier ones with the same name
        ddir = _path(root, "%s/%s.service.d" % (d, unit))
        if os.path.isdir(ddir):
            for name in os.listdir(ddir):
                if name.endswith(".conf"):
                    dropins[name] = os.path.join(ddir, name)
    files.extend(dropins[name] for name in sorted(dropins))
    value = None
    pattern = re.compile(r"^\s*%s\s*=\s*(.*?)\s*$" % re.escape(key))
    for path in files:
        try:
            with open(path) as fh:
                for line in fh:
                    m = pattern.match(line)
                    if m:
                        value = m.group(1) or None  # an empty assignment resets
        except OSError:
            continue
    return value


def detect_layout(root="/"):
    """Return dict(layout, files) describing where kubelet's settings live."""
    k3s = [n for n in ("k3s", "rke2") if os.path.isfile(_path(root, "etc/rancher/%s/config.yaml" % n))]
    if k3s:
        name = k3s[0]
        return {"layout": name, "files": {"config_list": "/etc/rancher/%s/config.yaml" % name}}
    if os.path.isfile(_path(root, "etc/kubernetes/kubelet.env")):
        files = {"env_file": "/etc/kubernetes/kubelet.env"}
        if os.path.isfile(_path(root, "etc/kubernetes/kubelet-config.yaml")):
            files["kubelet_config"] = "/etc/kubernetes/kubelet-config.yaml"
        return {"layout": "kubespray", "files": files}
    dropin = _first(root, KUBEADM_DROPINS)
    if dropin:
        extra = "/etc/sysconfig/kubelet" if os.path.isdir(_path(root, "etc/sysconfig")) and not \
            os.path.isdir(_path(root, "etc/default")) else "/etc/default/kubelet"
        files = {"dropin": dropin, "env_file": extra, "kubeadm_flags": "/var/lib/kubelet/kubeadm-flags.env"}
        if os.path.isfile(_path(root, "var/lib/kubelet/config.yaml")):
            files["kubelet_config"] = "/var/lib/kubelet/config.yaml"
        return {"layout": "kubeadm", "files": files}
    if unit_file(root, "kubelet"):
        return {"layout": "plain", "files": {"unit": unit_file(root, "kubelet")}}
    return {"layout": "none", "files": {}}


def runtimes(root="/"):
    """Container runtime units present, with their effective MountFlags."""
    found = []
    for unit in RUNTIME_UNITS:
        path = unit_file(root, unit)
        if path:
            found.append({"name": unit, "unit_file": path, "mount_flags": unit_setting(root, unit, "MountFlags")})
    return found


def mount_propagation(target, mountinfo="/proc/self/mountinfo"):
    """shared, slave, private or unbindable for the mount holding target."""
    best, best_fields = "", []
    with open(mountinfo) as fh:
        for line in fh:
            fields = line.split()
            mount_point = fields[4].replace("\\040", " ")
            prefix = mount_point.rstrip("/") + "/"
            if (target == mount_point or target.startswith(prefix)) and len(mount_point) >= len(best):
                best, best_fields = mount_point, fields[6:fields.index("-")]
    tags = [f.split(":")[0] for f in best_fields]
    if "shared" in tags:
        return "shared"
    if "master" in tags:
        return "slave"
    if "unbindable" in tags:
        return "unbindable"
    return "private"


def process_start_time(pid, proc="/proc"):
    """Epoch seconds at which a process started (from /proc/<pid>/stat and the boot time)."""
    with open(os.path.join(proc, str(pid), "stat")) as fh:
        stat = fh.read()
    # comm may contain spaces and parentheses: fields after the last ')' are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    start_ticks = int(fields[19])
    with open(os.path.join(proc, "stat")) as fh:
        btime = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
    return btime + start_ticks / float(os.sysconf("SC_CLK_TCK"))


def settings_files(layout_info):
    """The files whose content kubelet reads at start, for a detect_layout() result."""
    return sorted(set(v for v in layout_info["files"].values() if v))


# process_start_time() rests on /proc/stat's btime, which has whole-second resolution.
START_TIME_SLACK = 2.0


def restart_pending(started_at, files, root="/"):
    """Files changed after the process started (a restart that a failed run never made)."""
    newer = []
    for path in files:
        try:
            if os.stat(os.path.join(root, path.lstrip("/"))).st_mtime > started_at + START_TIME_SLACK:
                newer.append(path)
        except OSError:
            continue
    return newer


def kubelet_version(module, binary="kubelet"):
    """kubelet's version ('1.33.0') from `kubelet --version`, or None when it cannot be run.

    module: anything with AnsibleModule's get_bin_path() and run_command().
    """
    path = binary if os.path.isabs(binary) else module.get_bin_path(binary)
    if not path or not os.path.exists(path):
        return None
    rc, out, err = module.run_command([path, "--version"])
    match = re.match(r"^Kubernetes v(\d+\.\d+\.\d+)", out.strip()) if rc == 0 else None
    return match.group(1) if match else None
