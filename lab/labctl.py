"""labctl: the kubestorage lab of emulated kubeadm nodes in podman.

Commands:
  image                     build the node image if it is not cached (content-hashed tags)
  up NODE [NODE ...]        start nodes, NODE = name:role:version[:propagation]
                            (role: control-plane|worker; propagation of /: shared|private)
  down                      remove the cluster's nodes (only containers carrying the lab label)
  inventory                 print the inventory of a running cluster
  status                    list the lab's containers

Every container the lab starts is named ``ksl-<cluster>-<node>`` and labelled
``io.kubestorage.lab.cluster=<cluster>``; ``down`` removes only containers that carry
that label, so nothing else on the machine is touched.

Only the Python standard library is used, so this runs with any python3 >= 3.9.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
IMAGE_DIR = os.path.join(LAB_DIR, "image")
STATE_DIR = os.environ.get("KUBESTORAGE_LAB_STATE", os.path.join(LAB_DIR, ".state"))

LABEL = "io.kubestorage.lab"
NAME_PREFIX = "ksl-"
BASE_REPO = "localhost/kubestorage-lab-base"
NODE_REPO = "localhost/kubestorage-lab-node"

SUITE = "bookworm"
PACKAGES = [
    "python3", "python-is-python3", "python3-yaml", "systemd", "systemd-sysv", "dbus", "iproute2",
    "jq", "util-linux", "mount", "procps", "kmod", "nfs-common",
    "openssl",   # the static pod stand-ins' self-signed serving certificates
]
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# One place for how a lab node runs: runtime, limits, capabilities.
# runc because crun cannot run on this host's cgroup layout; low ulimits because the
# default ones need CAP_SYS_RESOURCE; SYS_ADMIN so systemd can honour MountFlags= and
# `mount --make-rshared` works, as on a real node; NET_ADMIN so a node can give itself the
# address kubeadm's manifests advertise (and probe), on an interface of its own.
RUN_OPTIONS = [
    "--systemd=always",
    "--runtime=runc",
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
    "--cap-add=SYS_ADMIN",
    "--cap-add=NET_ADMIN",
    "--network=none",
    "--pull=never",
]

NODE_RE = re.compile(r"^(?P<name>[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?):(?P<role>control-plane|worker):"
                     r"(?P<version>v?1\.\d+(\.\d+)?)(:(?P<propagation>shared|private))?$")
CLUSTER_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$")


class LabError(Exception):
    pass


def log(msg):
    print("labctl: %s" % msg, file=sys.stderr, flush=True)


def podman(*args, check=True, capture=True):
    cmd = ["podman"] + list(args)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() if capture else ""
        raise LabError("%s failed (rc=%d): %s" % (" ".join(cmd), proc.returncode, err))
    return proc.stdout.decode(errors="replace") if capture else ""


def image_exists(ref):
    return subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0


def debian_mirror():
    """The Debian mirror apt already uses (deb822 or one-line sources), else the default."""
    if os.environ.get("KUBESTORAGE_LAB_MIRROR"):
        return os.environ["KUBESTORAGE_LAB_MIRROR"]
    candidates = ["/etc/apt/sources.list"]
    src_dir = "/etc/apt/sources.list.d"
    if os.path.isdir(src_dir):
        candidates += [os.path.join(src_dir, f) for f in sorted(os.listdir(src_dir))
                       if f.endswith((".sources", ".list"))]
    for path in candidates:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M)
        if m:
            return m.group(1)
    return DEFAULT_MIRROR


def tree_hash(root, seed=""):
    """sha256 over the relative paths, modes and contents of every file below root."""
    h = hashlib.sha256(seed.encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fname in sorted(filenames):
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            h.update(("%s\0%o\0" % (rel, st.st_mode & 0o7777)).encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            else:
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:16]


def base_image():
    tag = hashlib.sha256(("%s\0%s" % (SUITE, ",".join(PACKAGES))).encode()).hexdigest()[:16]
    ref = "%s:%s" % (BASE_REPO, tag)
    if image_exists(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed: run `make host-deps` (apt-get install debootstrap)")
    mirror = debian_mirror()
    log("building base image %s with debootstrap from %s (about a minute)" % (ref, mirror))
    rootfs = tempfile.mkdtemp(prefix="ksl-rootfs-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                        SUITE, rootfs, mirror], check=True, stdout=subprocess.DEVNULL)
        # Trim what a node never needs, to keep the image small.
        for sub in ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale"):
            shutil.rmtree(os.path.join(rootfs, sub), ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["podman", "import", "--change", "CMD=/sbin/init", "-", ref],
                             stdin=tar.stdout, stdout=subprocess.DEVNULL, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise LabError("podman import of the base image failed")
    except subprocess.CalledProcessError as exc:
        raise LabError("debootstrap failed (%s); is %s reachable?" % (exc, mirror))
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return ref


def node_image():
    base = base_image()
    tag = tree_hash(IMAGE_DIR, seed=base)
    ref = "%s:%s" % (NODE_REPO, tag)
    if image_exists(ref):
        return ref
    log("building node image %s" % ref)
    podman("build", "--pull=never", "--runtime=runc", "--build-arg", "BASE=" + base,
           "-t", ref, IMAGE_DIR, capture=False)
    return ref


def container_name(cluster, node):
    return "%s%s-%s" % (NAME_PREFIX, cluster, node)


def parse_node(spec):
    m = NODE_RE.match(spec)
    if not m:
        raise LabError("node %r: expected name:role:version[:propagation], e.g. cp1:control-plane:1.33 or "
                       "w1:worker:1.25:private (name lower-case DNS label, role control-plane or worker, "
                       "propagation of / shared (default) or private)" % spec)
    version = m.group("version").lstrip("v")
    return {"name": m.group("name"), "role": m.group("role"), "version": version,
            "propagation": m.group("propagation")}


def lab_containers(cluster=None):
    args = ["ps", "-a", "--filter", "label=%s=true" % LABEL, "--format", "json"]
    if cluster:
        args[4:4] = ["--filter", "label=%s.cluster=%s" % (LABEL, cluster)]
    out = podman(*args)
    items = json.loads(out or "[]")
    result = []
    for item in items:
        names = item.get("Names") or []
        labels = item.get("Labels") or {}
        name = names[0] if names else ""
        # Both the label and the name prefix must match: never touch anything else.
        if labels.get(LABEL) == "true" and name.startswith(NAME_PREFIX):
            result.append({"name": name, "state": item.get("State"), "labels": labels})
    return result


def wait_running(name, timeout=120):
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        proc = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        state = proc.stdout.decode().strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise LabError("node %s did not boot within %ss (systemd says %r)" % (name, timeout, state))


def start_node(cluster, node, image, root_propagation="shared"):
    name = container_name(cluster, node["name"])
    podman("run", "-d", "--name", name, "--hostname", node["name"],
           "--label", "%s=true" % LABEL,
           "--label", "%s.cluster=%s" % (LABEL, cluster),
           "--label", "%s.node=%s" % (LABEL, node["name"]),
           "--label", "%s.role=%s" % (LABEL, node["role"]),
           "--label", "%s.version=%s" % (LABEL, node["version"]),
           "--env", "KUBESTORAGE_LAB_K8S_VERSION=%s" % node["version"],
           "--env", "KUBESTORAGE_LAB_ROLE=%s" % node["role"],
           "--env", "KUBESTORAGE_LAB_ROOT_PROPAGATION=%s" % root_propagation,
           *RUN_OPTIONS, image, "/sbin/init")
    return name


def inventory(cluster):
    nodes = lab_containers(cluster)
    if not nodes:
        raise LabError("no lab nodes are running for cluster %r; start them with `labctl up`" % cluster)
    hosts = {}
    groups = {"kube_control_plane": {}, "kube_node": {}}
    for c in sorted(nodes, key=lambda n: n["name"]):
        labels = c["labels"]
        host = labels["%s.node" % LABEL]
        hosts[host] = {
            "ansible_connection": "containers.podman.podman",
            "ansible_host": c["name"],
            "ansible_python_interpreter": "/usr/bin/python3",
            "lab_kubernetes_version": labels["%s.version" % LABEL],
        }
        role = labels["%s.role" % LABEL]
        # kubeadm control-plane nodes run a kubelet too, so they are also kube_node.
        groups["kube_node"][host] = None
        if role == "control-plane":
            groups["kube_control_plane"][host] = None
    return {"all": {"children": {
        "k8s_cluster": {"children": {
            "kube_control_plane": {"hosts": groups["kube_control_plane"]},
            "kube_node": {"hosts": groups["kube_node"]},
        }},
    }, "hosts": hosts}}


def write_inventory(cluster, path=None):
    inv = inventory(cluster)
    path = path or os.path.join(STATE_DIR, cluster, "inventory.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(inv, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def cmd_image(args):
    print(node_image())


def cmd_up(args):
    nodes = [parse_node(s) for s in args.nodes]
    names = [n["name"] for n in nodes]
    if len(set(names)) != len(names):
        raise LabError("node names must be unique: %s" % ", ".join(names))
    existing = {c["name"] for c in lab_containers(args.cluster)}
    image = node_image()
    started = []
    for node in nodes:
        name = container_name(args.cluster, node["name"])
        if name in existing:
            if not args.replace:
                log("%s already exists (use --replace to recreate it)" % name)
                continue
            podman("rm", "-f", "-t", "0", name)
        started.append(start_node(args.cluster, node, image, node["propagation"] or args.root_propagation))
    for name in started:
        log("%s: systemd %s" % (name, wait_running(name)))
    path = write_inventory(args.cluster, args.inventory)
    log("inventory: %s" % path)
    print(path)


def cmd_down(args):
    nodes = lab_containers(None if args.all else args.cluster)
    for c in nodes:
        podman("rm", "-f", "-t", "0", c["name"])
        log("removed %s" % c["name"])
    if not args.all:
        shutil.rmtree(os.path.join(STATE_DIR, args.cluster), ignore_errors=True)


def cmd_inventory(args):
    if args.output:
        print(write_inventory(args.cluster, args.output))
    else:
        json.dump(inventory(args.cluster), sys.stdout, indent=2, sort_keys=True)
        print()


def cmd_status(args):
    for c in lab_containers(None if args.all else args.cluster):
        labels = c["labels"]
        print("%-32s %-10s %-14s %s" % (c["name"], c["state"], labels.get(LABEL + ".role"),
                                        labels.get(LABEL + ".version")))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", default=os.environ.get("KUBESTORAGE_LAB_CLUSTER", "lab"),
                        help="lab cluster name (default: lab)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image").set_defaults(func=cmd_image)
    up = sub.add_parser("up")
    up.add_argument("nodes", nargs="+", metavar="NAME:ROLE:VERSION")
    up.add_argument("--replace", action="store_true", help="recreate nodes that already exist")
    up.add_argument("--root-propagation", choices=["shared", "private"], default="shared",
                    help="propagation of / at boot: shared as systemd sets it on a real host, or "
                         "private to reproduce a node where systemd is not in charge")
    up.add_argument("--inventory", help="where to write the inventory (JSON, a valid Ansible YAML inventory)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down")
    down.add_argument("--all", action="store_true", help="every lab cluster, not just --cluster")
    down.set_defaults(func=cmd_down)
    inv = sub.add_parser("inventory")
    inv.add_argument("--output")
    inv.set_defaults(func=cmd_inventory)
    st = sub.add_parser("status")
    st.add_argument("--all", action="store_true")
    st.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    if not CLUSTER_RE.match(args.cluster):
        parser.error("--cluster %r: use a short lower-case DNS label" % args.cluster)
    try:
        args.func(args)
    except LabError as exc:
        print("labctl: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
