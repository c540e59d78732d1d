# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/flag_files.py on real-world file shapes (reference
notes, section 3: where kubelet and control-plane flags live on kubeadm, kubespray and k3s
nodes).

Every fixture is checked for: reading, set/replace/remove (volume-plugin-dir and feature-gates
merging included), byte-identical idempotence, survival of every untouched line, and
malformed input raising FlagFileError with the path and the line.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/unit/plugins/module_utils/test_flag_files.py
"""

from __future__ import annotations

import difflib
import importlib.util
from collections import Counter

import pytest
import yaml

from ansible_collections.kubestorage.enablement.plugins.module_utils import flag_files

FlagFileError = flag_files.FlagFileError

FLEX_OLD = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
FLEX_NEW = "/var/lib/kubelet/volumeplugins"

# ---------------------------------------------------------------------------------------
# Fixtures: real-world shapes

# kubeadm deb/rpm package drop-in (/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf)
DROPIN_10_KUBEADM = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

# /var/lib/kubelet/kubeadm-flags.env as kubeadm writes it
KUBEADM_FLAGS_ENV = (
    'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock'
    ' --pod-infra-container-image=registry.k8s.io/pause:3.10"\n'
)

# /etc/default/kubelet as the Debian kubelet package ships it, and one a user has edited
DEFAULT_KUBELET_PRISTINE = "KUBELET_EXTRA_ARGS=\n"
DEFAULT_KUBELET = """\
# Extra kubelet flags, sourced by 10-kubeadm.conf (EnvironmentFile=-/etc/default/kubelet).
# Keep this comment.

KUBELET_EXTRA_ARGS=--node-ip=10.0.0.21 --feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false
"""

# kubespray /etc/kubernetes/kubelet.env rendered from kubelet.env.v1beta1.j2
KUBESPRAY_KUBELET_ENV = """\
KUBE_LOGTOSTDERR="--logtostderr=true"
KUBE_LOG_LEVEL="--v=2"
# The address for the info server to serve on (set to 0.0.0.0 or "" for all interfaces)
KUBELET_ADDRESS="--node-ip=10.0.0.21"
# The port for the info server to serve on
# KUBELET_PORT="--port=10250"
KUBELET_HOSTNAME="--hostname-override=node1"

KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\
--config=/etc/kubernetes/kubelet-config.yaml \\
--kubeconfig=/etc/kubernetes/kubelet.conf \\
--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \\
--runtime-cgroups=/system.slice/containerd.service \\
 --node-labels=node-role.kubernetes.io/worker= --feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false  "
# FlexVolume plugins
KUBELET_VOLUME_PLUGIN="--volume-plugin-dir=/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
KUBELET_CLOUDPROVIDER=""

PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""
KUBESPRAY_ARGS = [
    ("bootstrap-kubeconfig", "/etc/kubernetes/bootstrap-kubelet.conf"),
    ("config", "/etc/kubernetes/kubelet-config.yaml"),
    ("kubeconfig", "/etc/kubernetes/kubelet.conf"),
    ("container-runtime-endpoint", "unix:///var/run/containerd/containerd.sock"),
    ("runtime-cgroups", "/system.slice/containerd.service"),
    ("node-labels", "node-role.kubernetes.io/worker="),
    ("feature-gates", "CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false"),
]

# k3s /etc/rancher/k3s/config.yaml
K3S_CONFIG = """\
# k3s server configuration (see https://docs.k3s.io/installation/configuration)
write-kubeconfig-mode: "0644"
tls-san:
  - "k3s.example.internal"
node-label:
  - "storage=flex"   # used by the driver DaemonSet
kubelet-arg:
  # FlexVolume drivers live here
  - "volume-plugin-dir=/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
  - "max-pods=150"
  - feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false
kube-controller-manager-arg: ["flex-volume-plugin-dir=/usr/libexec/kubernetes/kubelet-plugins/volume/exec"]
disable:
  - traefik
# end of file
"""

# kubeadm /etc/kubernetes/manifests/kube-controller-manager.yaml: the lab's template
# (lab/image/rootfs/usr/share/kubestorage-lab/manifests) with LAB_REGISTRY and LAB_VERSION
# substituted.
KCM_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: kube-controller-manager
    tier: control-plane
  name: kube-controller-manager
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-controller-manager
    - --allocate-node-cidrs=true
    - --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --authorization-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --bind-address=127.0.0.1
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --cluster-cidr=10.244.0.0/16
    - --cluster-name=kubernetes
    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt
    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key
    - --controllers=*,bootstrapsigner,tokencleaner
    - --kubeconfig=/etc/kubernetes/controller-manager.conf
    - --leader-elect=true
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --root-ca-file=/etc/kubernetes/pki/ca.crt
    - --service-account-private-key-file=/etc/kubernetes/pki/sa.key
    - --service-cluster-ip-range=10.96.0.0/12
    - --use-service-account-credentials=true
    image: registry.k8s.io/kube-controller-manager:v1.33.0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /healthz
        port: 10257
        scheme: HTTPS
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: kube-controller-manager
    resources:
      requests:
        cpu: 200m
    volumeMounts:
    - mountPath: /etc/ssl/certs
      name: ca-certs
      readOnly: true
    - mountPath: /etc/ca-certificates
      name: etc-ca-certificates
      readOnly: true
    - mountPath: /usr/libexec/kubernetes/kubelet-plugins/volume/exec
      name: flexvolume-dir
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
    - mountPath: /etc/kubernetes/controller-manager.conf
      name: kubeconfig
      readOnly: true
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /etc/ssl/certs
      type: DirectoryOrCreate
    name: ca-certs
  - hostPath:
      path: /etc/ca-certificates
      type: DirectoryOrCreate
    name: etc-ca-certificates
  - hostPath:
      path: /usr/libexec/kubernetes/kubelet-plugins/volume/exec
      type: DirectoryOrCreate
    name: flexvolume-dir
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
  - hostPath:
      path: /etc/kubernetes/controller-manager.conf
      type: FileOrCreate
    name: kubeconfig
status: {}
"""

# kubeadm /etc/kubernetes/manifests/kube-apiserver.yaml (trimmed flag list, real layout)
APISERVER_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443
  creationTimestamp: null
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.10
    - --allow-privileged=true
    - --authorization-mode=Node,RBAC
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --enable-admission-plugins=NodeRestriction
    - --etcd-servers=https://127.0.0.1:2379
    - --feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false
    - --secure-port=6443
    - --service-cluster-ip-range=10.96.0.0/12
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    image: registry.k8s.io/kube-apiserver:v1.33.0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 10.0.0.10
        path: /livez
        port: 6443
        scheme: HTTPS
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: kube-apiserver
    resources:
      requests:
        cpu: 250m
    volumeMounts:
    - mountPath: /etc/ssl/certs
      name: ca-certs
      readOnly: true
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /etc/ssl/certs
      type: DirectoryOrCreate
    name: ca-certs
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
status: {}
"""

# kubeadm /var/lib/kubelet/config.yaml (note infoBufferSize: "0", double-quoted as Go writes it)
KUBEADM_KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
resolvConf: /run/systemd/resolve/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"""

# kubespray /etc/kubernetes/kubelet-config.yaml rendered from kubelet-config.v1beta1.yaml.j2
# (template-made: unsorted keys, comments, quoted strings)
KUBESPRAY_KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
nodeStatusUpdateFrequency: "10s"
failSwapOn: True
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: True
  x509:
    clientCAFile: /etc/kubernetes/ssl/ca.crt
authorization:
  mode: Webhook
staticPodPath: /etc/kubernetes/manifests
cgroupDriver: systemd
maxPods: 110
clusterDomain: cluster.local
# DNS settings for kubelet
clusterDNS:
- 169.254.25.10
# Node reserved CPU/memory
kubeReserved:
  cpu: 200m
  memory: 512M
featureGates:
  CSIMigrationPortworx: true   # keep this comment
  RecursiveReadOnlyMounts: false
resolvConf: "/run/systemd/resolve/resolv.conf"
"""


# ---------------------------------------------------------------------------------------
# Helpers


def changes_of(before, after):
    """(removed lines, added lines) between two texts, in order."""
    old = before.splitlines(True)
    new = after.splitlines(True)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            removed.extend(old[i1:i2])
            added.extend(new[j1:j2])
    return [ln.rstrip("\n") for ln in removed], [ln.rstrip("\n") for ln in added]


def assert_only(before, after, removed, added):
    """after differs from before only by these removed and added lines; every other line of
    before is in after, in the same order."""
    assert changes_of(before, after) == (removed, added)
    # independent of difflib's alignment: the same lines, counted, once the changes are taken out
    assert Counter(before.splitlines()) - Counter(removed) == Counter(after.splitlines()) - Counter(added)
    assert len(before.splitlines()) - len(removed) == len(after.splitlines()) - len(added)


def assert_error(exc_info, path, line):
    err = exc_info.value
    assert err.path == path
    assert err.line == line
    assert path in err.msg
    if line is not None:
        assert "line %d" % line in err.msg
    assert "fix:" in err.msg


def flags(pairs):
    return dict((n, v) for n, v in pairs if n is not None)


# ---------------------------------------------------------------------------------------
# Flag names, args, flags


class TestArgs:
    def test_normalize_flag_name(self):
        assert flag_files.normalize_flag_name("--volume-plugin-dir") == "volume-plugin-dir"
        assert flag_files.normalize_flag_name("-v") == "v"
        assert flag_files.normalize_flag_name("feature-gates") == "feature-gates"

    @pytest.mark.parametrize("bad", ["", "--", "a=b", "--a b", "a\tb", None])
    def test_normalize_flag_name_rejects(self, bad):
        with pytest.raises(FlagFileError) as exc:
            flag_files.normalize_flag_name(bad, "/etc/default/kubelet")
        assert exc.value.path == "/etc/default/kubelet"

    @pytest.mark.parametrize("text, words", [
        ("--a=b  --c=d", ["--a=b", "--c=d"]),
        ("--labels='x=y z' --b", ["--labels=x=y z", "--b"]),
        ('--a="q \\" \\\\ \\$x" next', ['--a=q " \\ $x', "next"]),
        ('"\\n stays"', ["\\n stays"]),
        ("--a=b\\ c", ["--a=b c"]),
        ("--a=b \\\n--c=d", ["--a=b", "--c=d"]),
        ("one\\\ntwo", ["onetwo"]),
        ("'it'\\''s'", ["it's"]),
        ("", []),
        ("   ", []),
    ])
    def test_split_args(self, text, words):
        assert flag_files.split_args(text, "p") == words

    @pytest.mark.parametrize("text, line", [("--a='x", 1), ('--a=1\n--b="x\n\ny', 2)])
    def test_split_args_unterminated(self, text, line):
        with pytest.raises(FlagFileError) as exc:
            flag_files.split_args(text, "/p")
        assert_error(exc, "/p", line)

    @pytest.mark.parametrize("tokens", [
        ["--a=b", "--c"],
        ["--node-labels=a=b,c=d", "plain"],
        ["with space", "it's", 'dq"', "back\\slash", "$HOME", ""],
    ])
    def test_join_args_round_trip(self, tokens):
        assert flag_files.split_args(flag_files.join_args(tokens)) == tokens

    def test_join_args_quotes_only_when_needed(self):
        assert flag_files.join_args(["--a=b", "x y"]) == "--a=b 'x y'"

    def test_args_to_flags(self):
        tokens = ["--a=1", "--bare", "value", "-v=2", "--empty=", "--eq=x=y", "-1", "--", "--after"]
        assert flag_files.args_to_flags(tokens) == [
            ("a", "1"), ("bare", None), (None, "value"), ("v", "2"), ("empty", ""),
            ("eq", "x=y"), (None, "-1"), (None, "--"), (None, "--after")]

    def test_args_to_flags_never_glues_the_next_token(self):
        assert flag_files.args_to_flags(["--volume-plugin-dir", "/x"]) == [
            ("volume-plugin-dir", None), (None, "/x")]

    def test_flags_to_args_inverse(self):
        tokens = ["--a=1", "--bare", "positional", "--eq=x=y", "--empty="]
        assert flag_files.flags_to_args(flag_files.args_to_flags(tokens)) == tokens

    def test_args_must_be_strings(self):
        with pytest.raises(FlagFileError):
            flag_files.args_to_flags("--a=b")


class TestSetFlags:
    PAIRS = [("a", "1"), (None, "pos"), ("b", "2"), ("a", "3"), ("c", None)]

    def test_replace_keeps_position_and_collapses_duplicates(self):
        new, changed = flag_files.set_flags(self.PAIRS, {"a": "9"})
        assert new == [("a", "9"), (None, "pos"), ("b", "2"), ("c", None)]
        assert changed == ["a"]

    def test_append_and_remove(self):
        new, changed = flag_files.set_flags(self.PAIRS, {"--d": "4", "b": None, "c": None})
        assert new == [("a", "1"), (None, "pos"), ("a", "3"), ("d", "4")]
        assert sorted(changed) == ["b", "c", "d"]

    def test_already_in_place(self):
        new, changed = flag_files.set_flags(self.PAIRS, {"b": "2", "zzz": None})
        assert new == self.PAIRS
        assert changed == []

    def test_duplicates_that_disagree_are_a_change(self):
        # pflag: the last one wins, so "a" is really 3 here
        new, changed = flag_files.set_flags(self.PAIRS, {"a": "1"})
        assert new == [("a", "1"), (None, "pos"), ("b", "2"), ("c", None)]
        assert changed == ["a"]

    def test_values_are_strings(self):
        new, dummy = flag_files.set_flags([], {"x": True, "n": 5})
        assert new == [("x", "true"), ("n", "5")]
        with pytest.raises(FlagFileError):
            flag_files.set_flags([], {"x": ["list"]}, "p")


class TestFeatureGates:
    def test_merge_keeps_other_gates_and_order(self):
        assert flag_files.merge_feature_gates("A=true,B=false,C=true", {"B": True, "D": False}) == \
            "A=true,B=true,C=true,D=false"

    def test_remove(self):
        assert flag_files.merge_feature_gates("A=true,B=false", {"A": None}) == "B=false"
        assert flag_files.merge_feature_gates("A=true", {"A": None}) is None
        assert flag_files.merge_feature_gates(None, {"A": None}) is None

    def test_from_nothing(self):
        assert flag_files.merge_feature_gates(None, {"A": True}) == "A=true"
        assert flag_files.merge_feature_gates("", {"A": False}) == "A=false"

    def test_unchanged_returns_the_same_string(self):
        value = "A=True, B=0"
        assert flag_files.merge_feature_gates(value, {"A": True, "B": False, "Z": None}) is value

    def test_spacing_kept_on_replace(self):
        assert flag_files.merge_feature_gates("A=true, B=false", {"B": True}) == "A=true, B=true"

    def test_duplicate_gates_collapse(self):
        assert flag_files.merge_feature_gates("A=true,B=true,A=false", {"A": True}) == "A=true,B=true"

    @pytest.mark.parametrize("bad", ["A", "A=yes", "=true", "A=true,B"])
    def test_parse_errors(self, bad):
        with pytest.raises(FlagFileError) as exc:
            flag_files.merge_feature_gates(bad, {"C": True}, "/etc/default/kubelet")
        assert exc.value.path == "/etc/default/kubelet"

    @pytest.mark.parametrize("changes", [{"A": "maybe"}, {"A": 1}, {"A=B": True}, {"": True}])
    def test_bad_changes(self, changes):
        with pytest.raises(FlagFileError):
            flag_files.merge_feature_gates("X=true", changes)


# ---------------------------------------------------------------------------------------
# Env files


def merge_gates_env(text, variable, gates, path="p"):
    """What a caller does for feature-gates: read, merge, write the final string."""
    current = flags(flag_files.env_file_read(text, variable, path)).get("feature-gates")
    merged = flag_files.merge_feature_gates(current, gates, path)
    return flag_files.env_file_update(text, variable, {"feature-gates": merged}, path)


class TestKubesprayKubeletEnv:
    P = "/etc/kubernetes/kubelet.env"

    def test_read(self):
        assert flag_files.env_file_read(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS", self.P) == KUBESPRAY_ARGS
        assert flag_files.env_file_read(KUBESPRAY_KUBELET_ENV, "KUBELET_VOLUME_PLUGIN", self.P) == [
            ("volume-plugin-dir", FLEX_OLD)]
        assert flag_files.env_file_read(KUBESPRAY_KUBELET_ENV, "KUBE_LOG_LEVEL", self.P) == [("v", "2")]
        assert flag_files.env_file_read(KUBESPRAY_KUBELET_ENV, "KUBELET_CLOUDPROVIDER", self.P) == []
        assert flag_files.env_file_read(KUBESPRAY_KUBELET_ENV, "KUBELET_PORT", self.P) == []  # commented out

    def test_volume_plugin_dir_replace(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_VOLUME_PLUGIN",
                                         {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert_only(KUBESPRAY_KUBELET_ENV, new,
                    ['KUBELET_VOLUME_PLUGIN="--volume-plugin-dir=%s"' % FLEX_OLD],
                    ['KUBELET_VOLUME_PLUGIN="--volume-plugin-dir=%s"' % FLEX_NEW])
        assert flag_files.env_file_update(new, "KUBELET_VOLUME_PLUGIN", {"volume-plugin-dir": FLEX_NEW}, self.P) is new

    def test_replace_inside_multiline_value(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS",
                                         {"--kubeconfig": "/etc/kubernetes/other.conf"}, self.P)
        assert_only(KUBESPRAY_KUBELET_ENV, new, ["--kubeconfig=/etc/kubernetes/kubelet.conf \\"],
                    ["--kubeconfig=/etc/kubernetes/other.conf \\"])

    def test_remove_a_continuation_line(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS", {"runtime-cgroups": None}, self.P)
        assert_only(KUBESPRAY_KUBELET_ENV, new, ["--runtime-cgroups=/system.slice/containerd.service \\"], [])

    def test_remove_first_and_second(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS",
                                         {"bootstrap-kubeconfig": None, "config": None}, self.P)
        assert flag_files.env_file_read(new, "KUBELET_ARGS", self.P) == KUBESPRAY_ARGS[2:]
        assert_only(KUBESPRAY_KUBELET_ENV, new, [
            'KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\',
            "--config=/etc/kubernetes/kubelet-config.yaml \\",
            "--kubeconfig=/etc/kubernetes/kubelet.conf \\",
        ], ['KUBELET_ARGS="--kubeconfig=/etc/kubernetes/kubelet.conf \\'])

    def test_append_goes_before_the_closing_quote(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert flag_files.env_file_read(new, "KUBELET_ARGS", self.P) == KUBESPRAY_ARGS + [("volume-plugin-dir", FLEX_NEW)]
        removed, added = changes_of(KUBESPRAY_KUBELET_ENV, new)
        assert removed == [KUBESPRAY_KUBELET_ENV.splitlines()[13]]
        assert added == [removed[0].replace("RecursiveReadOnlyMounts=false",
                                            "RecursiveReadOnlyMounts=false --volume-plugin-dir=" + FLEX_NEW)]

    def test_one_flag_per_line_layout_is_continued(self):
        text = ('KUBELET_OPTS="--a=1 \\\n'
                '  --b=2 \\\n'
                '  --c=3"\n')
        new = flag_files.env_file_update(text, "KUBELET_OPTS", {"d": "4", "e": "5"}, self.P)
        assert new == 'KUBELET_OPTS="--a=1 \\\n  --b=2 \\\n  --c=3 \\\n  --d=4 \\\n  --e=5"\n'
        assert flag_files.env_file_update(new, "KUBELET_OPTS", {"d": None, "e": None}, self.P) == text
        assert flag_files.env_file_update(text, "KUBELET_OPTS", {"a": None}, self.P) == 'KUBELET_OPTS="--b=2 \\\n  --c=3"\n'

    def test_feature_gates_merge_never_clobbers(self):
        new = merge_gates_env(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS", {"RecursiveReadOnlyMounts": True, "NewGate": True})
        assert flags(flag_files.env_file_read(new, "KUBELET_ARGS", self.P))["feature-gates"] == \
            "CSIMigrationPortworx=true,RecursiveReadOnlyMounts=true,NewGate=true"
        again = merge_gates_env(new, "KUBELET_ARGS", {"RecursiveReadOnlyMounts": True, "NewGate": True})
        assert again is new

    def test_idempotent(self):
        for variable, changes in [("KUBELET_ARGS", dict(KUBESPRAY_ARGS)),
                                  ("KUBELET_VOLUME_PLUGIN", {"volume-plugin-dir": FLEX_OLD, "gone": None}),
                                  ("KUBELET_CLOUDPROVIDER", {"cloud-provider": None})]:
            assert flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, variable, changes, self.P) is KUBESPRAY_KUBELET_ENV

    def test_empty_value_and_new_variable(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_CLOUDPROVIDER", {"cloud-provider": "external"}, self.P)
        assert_only(KUBESPRAY_KUBELET_ENV, new, ['KUBELET_CLOUDPROVIDER=""'],
                    ['KUBELET_CLOUDPROVIDER="--cloud-provider=external"'])
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_CUSTOM_ARGS", {"max-pods": "200"}, self.P)
        assert new == KUBESPRAY_KUBELET_ENV + 'KUBELET_CUSTOM_ARGS="--max-pods=200"\n'

    def test_remove_everything(self):
        new = flag_files.env_file_update(KUBESPRAY_KUBELET_ENV, "KUBELET_ARGS",
                                         dict((n, None) for n, dummy in KUBESPRAY_ARGS), self.P)
        assert flag_files.env_file_read(new, "KUBELET_ARGS", self.P) == []
        assert 'KUBELET_ARGS=""' in new.splitlines()
        assert new.splitlines()[:8] == KUBESPRAY_KUBELET_ENV.splitlines()[:8]
        assert new.splitlines()[-5:] == KUBESPRAY_KUBELET_ENV.splitlines()[-5:]


class TestKubeadmFlagsEnv:
    P = "/var/lib/kubelet/kubeadm-flags.env"

    def test_read(self):
        assert flag_files.env_file_read(KUBEADM_FLAGS_ENV, "KUBELET_KUBEADM_ARGS", self.P) == [
            ("container-runtime-endpoint", "unix:///var/run/containerd/containerd.sock"),
            ("pod-infra-container-image", "registry.k8s.io/pause:3.10")]

    def test_set_replace_remove(self):
        new = flag_files.env_file_update(KUBEADM_FLAGS_ENV, "KUBELET_KUBEADM_ARGS", {
            "pod-infra-container-image": "registry.k8s.io/pause:3.9", "volume-plugin-dir": FLEX_NEW}, self.P)
        assert new == ('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/'
                       'containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9'
                       ' --volume-plugin-dir=%s"\n' % FLEX_NEW)
        back = flag_files.env_file_update(new, "KUBELET_KUBEADM_ARGS", {
            "pod-infra-container-image": "registry.k8s.io/pause:3.10", "volume-plugin-dir": None}, self.P)
        assert back == KUBEADM_FLAGS_ENV

    def test_feature_gates_added(self):
        new = merge_gates_env(KUBEADM_FLAGS_ENV, "KUBELET_KUBEADM_ARGS", {"A": True})
        assert new.endswith(' --feature-gates=A=true"\n')

    def test_idempotent(self):
        assert flag_files.env_file_update(KUBEADM_FLAGS_ENV, "KUBELET_KUBEADM_ARGS", {
            "pod-infra-container-image": "registry.k8s.io/pause:3.10"}, self.P) is KUBEADM_FLAGS_ENV


class TestDefaultKubelet:
    P = "/etc/default/kubelet"

    def test_read(self):
        assert flag_files.env_file_read(DEFAULT_KUBELET, "KUBELET_EXTRA_ARGS", self.P) == [
            ("node-ip", "10.0.0.21"), ("feature-gates", "CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false")]
        assert flag_files.env_file_read(DEFAULT_KUBELET_PRISTINE, "KUBELET_EXTRA_ARGS", self.P) == []
        assert flag_files.env_file_read(None, "KUBELET_EXTRA_ARGS", self.P) == []

    def test_unquoted_value_with_several_args_gets_double_quotes(self):
        """Unquoted white space splits the value when sh sources the file: quote it whole."""
        new = flag_files.env_file_update(DEFAULT_KUBELET, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        value = DEFAULT_KUBELET.splitlines()[3].split("=", 1)[1]
        assert_only(DEFAULT_KUBELET, new, [DEFAULT_KUBELET.splitlines()[3]],
                    ['KUBELET_EXTRA_ARGS="%s --volume-plugin-dir=%s"' % (value, FLEX_NEW)])
        assert flag_files.env_file_update("KUBELET_EXTRA_ARGS=--a=1\n", "KUBELET_EXTRA_ARGS", {"a": "2"}, self.P) \
            == "KUBELET_EXTRA_ARGS=--a=2\n"

    def test_feature_gates(self):
        new = merge_gates_env(DEFAULT_KUBELET, "KUBELET_EXTRA_ARGS", {"CSIMigrationPortworx": None, "X": False})
        assert_only(DEFAULT_KUBELET, new, [DEFAULT_KUBELET.splitlines()[3]],
                    ['KUBELET_EXTRA_ARGS="--node-ip=10.0.0.21 --feature-gates=RecursiveReadOnlyMounts=false,X=false"'])
        gone = merge_gates_env(new, "KUBELET_EXTRA_ARGS", {"RecursiveReadOnlyMounts": None, "X": None})
        assert gone.splitlines()[3] == 'KUBELET_EXTRA_ARGS="--node-ip=10.0.0.21"'  # the quotes it gained stay

    def test_pristine_package_file(self):
        new = flag_files.env_file_update(DEFAULT_KUBELET_PRISTINE, "KUBELET_EXTRA_ARGS",
                                         {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert new == "KUBELET_EXTRA_ARGS=--volume-plugin-dir=%s\n" % FLEX_NEW
        assert flag_files.env_file_update(new, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": None}, self.P) == \
            DEFAULT_KUBELET_PRISTINE

    @pytest.mark.parametrize("text", [None, "", "# only a comment"])
    def test_missing_file_or_variable(self, text):
        new = flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert new == (text + "\n" if text else "") + 'KUBELET_EXTRA_ARGS="--volume-plugin-dir=%s"\n' % FLEX_NEW
        assert flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": None}, self.P) is text

    def test_quoting_styles_and_export(self):
        text = "export KUBELET_EXTRA_ARGS='--a=1'\nOTHER=\"x\"\n"
        new = flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"a": "2", "b": "3"}, self.P)
        assert new == "export KUBELET_EXTRA_ARGS='--a=2 --b=3'\nOTHER=\"x\"\n"
        new = flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"c": 'q"$x\\'}, self.P)
        assert new == "export KUBELET_EXTRA_ARGS='--a=1 --c=q\"$x\\'\nOTHER=\"x\"\n"
        assert flag_files.env_file_read(new, "KUBELET_EXTRA_ARGS", self.P) == [("a", "1"), ("c", 'q"$x\\')]
        with pytest.raises(FlagFileError):
            flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"c": "it's"}, self.P)
        new = flag_files.env_file_update("KUBELET_EXTRA_ARGS=--a=1\n", "KUBELET_EXTRA_ARGS", {"b": 'q"$x'}, self.P)
        assert new == 'KUBELET_EXTRA_ARGS="--a=1 --b=q\\"\\$x"\n'
        assert flag_files.env_file_read(new, "KUBELET_EXTRA_ARGS", self.P) == [("a", "1"), ("b", 'q"$x')]
        text = 'KUBELET_EXTRA_ARGS="--a=1"\n'
        new = flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"b": 'q"$x'}, self.P)
        assert new == 'KUBELET_EXTRA_ARGS="--a=1 --b=q\\"\\$x"\n'
        assert flag_files.env_file_read(new, "KUBELET_EXTRA_ARGS", self.P) == [("a", "1"), ("b", 'q"$x')]

    def test_last_assignment_wins(self):
        text = "KUBELET_EXTRA_ARGS=--a=1\nKUBELET_EXTRA_ARGS=--a=2\n"
        assert flag_files.env_file_read(text, "KUBELET_EXTRA_ARGS", self.P) == [("a", "2")]
        assert flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"a": "3"}, self.P) == \
            "KUBELET_EXTRA_ARGS=--a=1\nKUBELET_EXTRA_ARGS=--a=3\n"

    def test_value_with_space_refused(self):
        with pytest.raises(FlagFileError) as exc:
            flag_files.env_file_update(DEFAULT_KUBELET, "KUBELET_EXTRA_ARGS", {"node-labels": "a b"}, self.P)
        assert exc.value.path == self.P


class TestEnvFileErrors:
    P = "/etc/sysconfig/kubelet"

    @pytest.mark.parametrize("text, line", [
        ('# c\nKUBELET_EXTRA_ARGS="--a=1\n\n', 2),
        ("A=1\nKUBELET_EXTRA_ARGS='--a=1\n", 2),
        ("A=1\n\n--volume-plugin-dir=/x\n", 3),
        ("A=1\nB=\"ok \\\nstill ok\"\nnot an assignment\n", 4),
        ("A=--a=1 \\\n  --b=2\nnot an assignment\n", 3),
        ("KUBELET_EXTRA_ARGS = ok\n1BAD=x\n", 2),
    ])
    def test_malformed(self, text, line):
        for call in (lambda: flag_files.env_file_read(text, "KUBELET_EXTRA_ARGS", self.P),
                     lambda: flag_files.env_file_update(text, "KUBELET_EXTRA_ARGS", {"a": "b"}, self.P)):
            with pytest.raises(FlagFileError) as exc:
                call()
            assert_error(exc, self.P, line)

    def test_bad_variable_name(self):
        with pytest.raises(FlagFileError):
            flag_files.env_file_read("", "NOT-A-NAME", self.P)

    def test_malformed_multiline_kubelet_env(self):
        broken = KUBESPRAY_KUBELET_ENV.replace('KUBELET_CLOUDPROVIDER=""', 'KUBELET_CLOUDPROVIDER="')
        with pytest.raises(FlagFileError) as exc:
            flag_files.env_file_read(broken, "KUBELET_ARGS", "/etc/kubernetes/kubelet.env")
        assert_error(exc, "/etc/kubernetes/kubelet.env", 17)
        # KUBELET_ARGS closed too early: its last line is left over, not an assignment
        broken = KUBESPRAY_KUBELET_ENV.replace('--runtime-cgroups=/system.slice/containerd.service \\\n',
                                               '--runtime-cgroups=/system.slice/containerd.service"\n')
        with pytest.raises(FlagFileError) as exc:
            flag_files.env_file_read(broken, "KUBELET_ARGS", "/etc/kubernetes/kubelet.env")
        assert_error(exc, "/etc/kubernetes/kubelet.env", 14)


# ---------------------------------------------------------------------------------------
# Drop-ins


class TestDropin:
    P = "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"

    def test_read(self):
        assert flag_files.dropin_read(DROPIN_10_KUBEADM, "KUBELET_KUBECONFIG_ARGS", self.P) == [
            ("bootstrap-kubeconfig", "/etc/kubernetes/bootstrap-kubelet.conf"),
            ("kubeconfig", "/etc/kubernetes/kubelet.conf")]
        assert flag_files.dropin_read(DROPIN_10_KUBEADM, "KUBELET_CONFIG_ARGS", self.P) == [
            ("config", "/var/lib/kubelet/config.yaml")]
        assert flag_files.dropin_read(DROPIN_10_KUBEADM, "KUBELET_EXTRA_ARGS", self.P) == []

    def test_set_replace_remove(self):
        line = 'Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"'
        new = flag_files.dropin_update(DROPIN_10_KUBEADM, "KUBELET_CONFIG_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert_only(DROPIN_10_KUBEADM, new, [line], [line[:-1] + ' --volume-plugin-dir=%s"' % FLEX_NEW])
        replaced = flag_files.dropin_update(new, "KUBELET_CONFIG_ARGS", {"volume-plugin-dir": FLEX_OLD}, self.P)
        assert_only(DROPIN_10_KUBEADM, replaced, [line], [line[:-1] + ' --volume-plugin-dir=%s"' % FLEX_OLD])
        removed = flag_files.dropin_update(replaced, "KUBELET_CONFIG_ARGS", {"volume-plugin-dir": None}, self.P)
        assert removed == DROPIN_10_KUBEADM

    def test_idempotent(self):
        for variable, changes in [("KUBELET_CONFIG_ARGS", {"config": "/var/lib/kubelet/config.yaml"}),
                                  ("KUBELET_KUBECONFIG_ARGS", {"kubeconfig": "/etc/kubernetes/kubelet.conf", "x": None}),
                                  ("KUBELET_EXTRA_ARGS", {"gone": None})]:
            assert flag_files.dropin_update(DROPIN_10_KUBEADM, variable, changes, self.P) is DROPIN_10_KUBEADM

    def test_new_variable_after_the_last_environment_line(self):
        new = flag_files.dropin_update(DROPIN_10_KUBEADM, "KUBELET_STORAGE_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        lines = new.splitlines()
        assert lines[4] == 'Environment="KUBELET_STORAGE_ARGS=--volume-plugin-dir=%s"' % FLEX_NEW
        assert_only(DROPIN_10_KUBEADM, new, [], [lines[4]])
        assert flag_files.dropin_read(new, "KUBELET_STORAGE_ARGS", self.P) == [("volume-plugin-dir", FLEX_NEW)]

    def test_feature_gates(self):
        current = flags(flag_files.dropin_read(DROPIN_10_KUBEADM, "KUBELET_CONFIG_ARGS", self.P)).get("feature-gates")
        merged = flag_files.merge_feature_gates(current, {"A": True})
        new = flag_files.dropin_update(DROPIN_10_KUBEADM, "KUBELET_CONFIG_ARGS", {"feature-gates": merged}, self.P)
        merged = flag_files.merge_feature_gates(
            flags(flag_files.dropin_read(new, "KUBELET_CONFIG_ARGS", self.P))["feature-gates"], {"B": False})
        new = flag_files.dropin_update(new, "KUBELET_CONFIG_ARGS", {"feature-gates": merged}, self.P)
        assert flags(flag_files.dropin_read(new, "KUBELET_CONFIG_ARGS", self.P))["feature-gates"] == "A=true,B=false"

    @pytest.mark.parametrize("text", [None, "", "[Unit]\nDescription=kubelet storage flags\n"])
    def test_creates_section_and_line(self, text):
        new = flag_files.dropin_update(text, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert new.endswith('[Service]\nEnvironment="KUBELET_EXTRA_ARGS=--volume-plugin-dir=%s"\n' % FLEX_NEW)
        assert new.startswith(text or "")
        assert flag_files.dropin_update(text, "KUBELET_EXTRA_ARGS", {"volume-plugin-dir": None}, self.P) is text

    def test_several_assignments_on_one_line(self):
        text = ("[Service]\n"
                "Environment=\"A=--a=1 --b=2\" B=--c=3 'C=--d=4' D=\"--e=5\" \\\n"
                "  \"E=--g=7\"\n"
                "ExecStart=/usr/bin/kubelet $A $B\n")
        assert flag_files.dropin_read(text, "A", self.P) == [("a", "1"), ("b", "2")]
        assert flag_files.dropin_read(text, "B", self.P) == [("c", "3")]
        assert flag_files.dropin_read(text, "C", self.P) == [("d", "4")]
        assert flag_files.dropin_read(text, "D", self.P) == [("e", "5")]
        assert flag_files.dropin_read(text, "E", self.P) == [("g", "7")]
        new = flag_files.dropin_update(text, "B", {"c": "9", "x": "1"}, self.P)
        assert new.splitlines()[1] == "Environment=\"A=--a=1 --b=2\" \"B=--c=9 --x=1\" 'C=--d=4' D=\"--e=5\" \\"
        new = flag_files.dropin_update(text, "C", {"d": None, "y": "2"}, self.P)
        assert new.splitlines()[1] == "Environment=\"A=--a=1 --b=2\" B=--c=3 'C=--y=2' D=\"--e=5\" \\"
        new = flag_files.dropin_update(text, "D", {"f": "6"}, self.P)
        assert new.splitlines()[1] == "Environment=\"A=--a=1 --b=2\" B=--c=3 'C=--d=4' D=\"--e=5 --f=6\" \\"
        new = flag_files.dropin_update(text, "E", {"g": None}, self.P)
        assert new.splitlines()[2] == '  "E="'
        for var in "ABCDE":
            assert flag_files.dropin_read(new, var, self.P) == ([] if var == "E" else flag_files.dropin_read(text, var, self.P))

    def test_empty_environment_resets(self):
        text = "[Service]\nEnvironment=A=--a=1\nEnvironment=\n"
        assert flag_files.dropin_read(text, "A", self.P) == []
        new = flag_files.dropin_update(text, "A", {"a": "2"}, self.P)
        assert new == text + 'Environment="A=--a=2"\n'
        assert flag_files.dropin_read(new, "A", self.P) == [("a", "2")]

    def test_percent_is_a_specifier(self):
        new = flag_files.dropin_update("[Service]\n", "A", {"x": "100%"}, self.P)
        assert new == '[Service]\nEnvironment="A=--x=100%%"\n'
        assert flag_files.dropin_read(new, "A", self.P) == [("x", "100%")]

    @pytest.mark.parametrize("text, line", [
        ('[Service]\nEnvironment="A=--a=1\n', 2),
        ("# c\n[Service\nEnvironment=A=1\n", 2),
        ("[Service]\nEnvironment=A=1\nthis is not systemd syntax\n", 3),
        ("Environment=A=1\n[Service]\n", 1),
        ("[Service]\n\nEnvironment=A=1 novalue\n", 3),
        ("[Service]\nEnvironment=\"A=1\" \\\n 'B=2\n", 3),
    ])
    def test_malformed(self, text, line):
        for call in (lambda: flag_files.dropin_read(text, "A", self.P),
                     lambda: flag_files.dropin_update(text, "A", {"a": "b"}, self.P)):
            with pytest.raises(FlagFileError) as exc:
                call()
            assert_error(exc, self.P, line)

    def test_malformed_real_dropin(self):
        broken = DROPIN_10_KUBEADM.replace("ExecStart=\n", "ExecStart\n")
        with pytest.raises(FlagFileError) as exc:
            flag_files.dropin_read(broken, "KUBELET_CONFIG_ARGS", self.P)
        assert_error(exc, self.P, 10)


# ---------------------------------------------------------------------------------------
# Static pod manifests


class TestStaticPod:
    P = "/etc/kubernetes/manifests/kube-controller-manager.yaml"
    A = "/etc/kubernetes/manifests/kube-apiserver.yaml"

    def test_read(self):
        pairs = flag_files.static_pod_read(KCM_MANIFEST, "kube-controller-manager", self.P)
        assert len(pairs) == 17
        assert pairs[0] == ("allocate-node-cidrs", "true")
        assert flags(pairs)["controllers"] == "*,bootstrapsigner,tokencleaner"
        assert flag_files.static_pod_read(KCM_MANIFEST, None, self.P) == pairs
        api = flags(flag_files.static_pod_read(APISERVER_MANIFEST, None, self.A))
        assert api["feature-gates"] == "CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false"
        assert api["authorization-mode"] == "Node,RBAC"

    def test_go_dump_reproduces_kubeadm_layout(self):
        for text in (KCM_MANIFEST, APISERVER_MANIFEST, KUBEADM_KUBELET_CONFIG):
            assert flag_files._go_dump(yaml.safe_load(text)) == text  # pylint: disable=protected-access

    def test_no_change_is_byte_identical(self):
        assert flag_files.static_pod_update(KCM_MANIFEST, None, {}, self.P) is KCM_MANIFEST
        assert flag_files.static_pod_update(KCM_MANIFEST, None, {"leader-elect": "true", "nope": None}, self.P) is KCM_MANIFEST
        assert flag_files.static_pod_update(APISERVER_MANIFEST, "kube-apiserver", {"secure-port": "6443"}, self.A) is APISERVER_MANIFEST

    def test_one_changed_flag_changes_one_line(self):
        new = flag_files.static_pod_update(KCM_MANIFEST, "kube-controller-manager", {"leader-elect": "false"}, self.P)
        assert_only(KCM_MANIFEST, new, ["    - --leader-elect=true"], ["    - --leader-elect=false"])

    def test_add_and_remove(self):
        new = flag_files.static_pod_update(KCM_MANIFEST, None, {"bind-address": None, "v": "2"}, self.P)
        assert_only(KCM_MANIFEST, new, ["    - --bind-address=127.0.0.1"], ["    - --v=2"])
        lines = new.splitlines()
        assert lines[lines.index("    - --v=2") - 1] == "    - --use-service-account-credentials=true"

    def test_flexvolume_dir_move(self):
        new = flag_files.static_pod_update(
            KCM_MANIFEST, "kube-controller-manager", {"flex-volume-plugin-dir": FLEX_NEW}, self.P,
            host_path_mounts=[{"name": "flexvolume-dir", "path": FLEX_NEW}])
        assert_only(KCM_MANIFEST, new,
                    ["    - mountPath: " + FLEX_OLD, "      path: " + FLEX_OLD],
                    ["    - --flex-volume-plugin-dir=" + FLEX_NEW, "    - mountPath: " + FLEX_NEW,
                     "      path: " + FLEX_NEW])
        pod = yaml.safe_load(new)
        vol = [v for v in pod["spec"]["volumes"] if v["name"] == "flexvolume-dir"]
        mnt = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "flexvolume-dir"]
        assert vol == [{"hostPath": {"path": FLEX_NEW, "type": "DirectoryOrCreate"}, "name": "flexvolume-dir"}]
        assert mnt == [{"mountPath": FLEX_NEW, "name": "flexvolume-dir"}]
        again = flag_files.static_pod_update(new, None, {"flex-volume-plugin-dir": FLEX_NEW}, self.P,
                                             host_path_mounts=[{"name": "flexvolume-dir", "path": FLEX_NEW}])
        assert again is new

    def test_new_mount_on_apiserver(self):
        new = flag_files.static_pod_update(APISERVER_MANIFEST, None, {}, self.A, host_path_mounts=[
            {"name": "plugins", "path": "/var/lib/plugins", "type": "Directory", "read_only": True}])
        assert_only(APISERVER_MANIFEST, new, [], [
            "    - mountPath: /var/lib/plugins", "      name: plugins", "      readOnly: true",
            "  - hostPath:", "      path: /var/lib/plugins", "      type: Directory", "    name: plugins"])

    def test_mount_matched_by_host_path(self):
        new = flag_files.static_pod_update(APISERVER_MANIFEST, None, {}, self.A, host_path_mounts=[
            {"name": "certs", "path": "/etc/ssl/certs", "read_only": True}])
        assert new is APISERVER_MANIFEST  # the existing ca-certs volume already is that mount

    def test_mount_clash_refused(self):
        # moving ca-certs to /etc/kubernetes/pki would mount two volumes there
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_update(APISERVER_MANIFEST, None, {}, self.A, host_path_mounts=[
                {"name": "other", "path": "/x"}, {"name": "ca-certs", "path": "/etc/kubernetes/pki"}])
        assert "k8s-certs" in exc.value.msg and exc.value.path == self.A

    def test_feature_gates_merge(self):
        current = flags(flag_files.static_pod_read(APISERVER_MANIFEST, None, self.A))["feature-gates"]
        merged = flag_files.merge_feature_gates(current, {"RecursiveReadOnlyMounts": True, "New": True})
        new = flag_files.static_pod_update(APISERVER_MANIFEST, None, {"feature-gates": merged}, self.A)
        assert_only(APISERVER_MANIFEST, new,
                    ["    - --feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false"],
                    ["    - --feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=true,New=true"])

    @pytest.mark.parametrize("text, how", [(KCM_MANIFEST, "go-dump"), (APISERVER_MANIFEST, "go-dump"),
                                           (KUBEADM_KUBELET_CONFIG, "go-dump"), (KUBESPRAY_KUBELET_CONFIG, "in-place"),
                                           (K3S_CONFIG, "in-place")])
    def test_kubeadm_files_are_dumped_others_edited_in_place(self, text, how):
        node, data = flag_files._load_yaml(text, "p")  # pylint: disable=protected-access
        new = dict(data, addedKey="x")
        out, used = flag_files._emit_yaml(text, node, data, new)  # pylint: disable=protected-access
        assert used == how
        assert_only(text, out, [], ["addedKey: x"])

    def test_in_place_editor_matches_go_dump(self, monkeypatch):
        """The line-based fallback gives the same bytes as the dump on kubeadm files."""
        kwargs = dict(changes={"flex-volume-plugin-dir": FLEX_NEW, "bind-address": None, "leader-elect": "false"},
                      path=self.P, host_path_mounts=[{"name": "flexvolume-dir", "path": FLEX_NEW},
                                                     {"name": "extra", "path": "/extra", "read_only": True}])
        dumped = flag_files.static_pod_update(KCM_MANIFEST, None, **kwargs)
        monkeypatch.setattr(flag_files, "_go_layout", lambda text, data: False)
        assert flag_files.static_pod_update(KCM_MANIFEST, None, **kwargs) == dumped

    def test_hand_written_manifest_edited_in_place(self):
        text = """\
# hand-written, not kubeadm: comments, indented lists, quotes, flow mappings
apiVersion: v1
kind: Pod
metadata:
  name: kube-controller-manager
spec:
  containers:
    - name: sidecar
      image: busybox
    - name: kube-controller-manager
      image: "registry.k8s.io/kube-controller-manager:v1.33.0"
      command:
        - kube-controller-manager
        - "--leader-elect=true"   # HA
        - --bind-address=127.0.0.1
      volumeMounts:
        - {name: ca-certs, mountPath: /etc/ssl/certs, readOnly: true}
  volumes:
    - name: ca-certs
      hostPath: {path: /etc/ssl/certs, type: DirectoryOrCreate}
"""
        new = flag_files.static_pod_update(text, "kube-controller-manager",
                                           {"leader-elect": "false", "flex-volume-plugin-dir": FLEX_NEW}, self.P,
                                           host_path_mounts=[{"name": "flexvolume-dir", "path": FLEX_NEW}])
        assert_only(text, new, ['        - "--leader-elect=true"   # HA'], [
            '        - "--leader-elect=false"   # HA',
            "        - --flex-volume-plugin-dir=" + FLEX_NEW,
            "        - mountPath: " + FLEX_NEW, "          name: flexvolume-dir",
            "    - hostPath:", "        path: " + FLEX_NEW, "        type: DirectoryOrCreate",
            "      name: flexvolume-dir"])
        assert flag_files.static_pod_update(new, "kube-controller-manager", {"leader-elect": "false"}, self.P) is new

    def test_errors(self):
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_read(KCM_MANIFEST, "kube-scheduler", self.P)
        assert_error(exc, self.P, 11)
        assert "kube-controller-manager" in exc.value.msg
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_update(KCM_MANIFEST.replace("kind: Pod", "kind: Deployment"), None, {"a": "b"}, self.P)
        assert_error(exc, self.P, 2)
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_update(KCM_MANIFEST.replace("    - --leader-elect=true\n", "\t- --leader-elect=true\n"),
                                         None, {"a": "b"}, self.P)
        assert_error(exc, self.P, 25)
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_read(KCM_MANIFEST.replace("    - --leader-elect=true\n", '    - "--leader-elect=true\n'),
                                       None, self.P)
        assert_error(exc, self.P, 25)
        assert "quoted scalar" in exc.value.msg
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_read(KCM_MANIFEST.replace("  name: kube-controller-manager\n", "  name: x\n\tbad\n"),
                                       None, self.P)
        assert exc.value.line == 9
        two = KCM_MANIFEST.replace("  hostNetwork: true\n", "  - name: second\n    image: x\n  hostNetwork: true\n")
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_read(two, None, self.P)
        assert_error(exc, self.P, 11)
        with pytest.raises(FlagFileError) as exc:
            flag_files.static_pod_read(None, None, self.P)
        assert_error(exc, self.P, None)


# ---------------------------------------------------------------------------------------
# k3s config lists


class TestK3sConfig:
    P = "/etc/rancher/k3s/config.yaml"

    def test_read(self):
        assert flag_files.config_list_read(K3S_CONFIG, "kubelet-arg", self.P) == [
            ("volume-plugin-dir", FLEX_OLD), ("max-pods", "150"),
            ("feature-gates", "CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false")]
        assert flag_files.config_list_read(K3S_CONFIG, "kube-controller-manager-arg", self.P) == [
            ("flex-volume-plugin-dir", FLEX_OLD)]
        assert flag_files.config_list_read(K3S_CONFIG, "kube-apiserver-arg", self.P) == []
        assert flag_files.config_list_read(None, "kubelet-arg", self.P) == []

    def test_replace_keeps_quoting(self):
        new = flag_files.config_list_update(K3S_CONFIG, "kubelet-arg", {"volume-plugin-dir": FLEX_NEW}, self.P)
        assert_only(K3S_CONFIG, new, ['  - "volume-plugin-dir=%s"' % FLEX_OLD], ['  - "volume-plugin-dir=%s"' % FLEX_NEW])

    def test_append_uses_neighbour_style_and_remove(self):
        new = flag_files.config_list_update(K3S_CONFIG, "kubelet-arg", {"max-pods": None, "v": "2"}, self.P)
        assert_only(K3S_CONFIG, new, ['  - "max-pods=150"'], ["  - v=2"])
        assert flag_files.config_list_read(new, "kubelet-arg", self.P)[-1] == ("v", "2")
        new = flag_files.config_list_update(K3S_CONFIG, "node-label", {"zone": "a"}, self.P)
        assert_only(K3S_CONFIG, new, [], ['  - "zone=a"'])

    def test_feature_gates_merge(self):
        current = flags(flag_files.config_list_read(K3S_CONFIG, "kubelet-arg", self.P))["feature-gates"]
        merged = flag_files.merge_feature_gates(current, {"CSIMigrationPortworx": False})
        new = flag_files.config_list_update(K3S_CONFIG, "kubelet-arg", {"feature-gates": merged}, self.P)
        assert_only(K3S_CONFIG, new, ["  - feature-gates=CSIMigrationPortworx=true,RecursiveReadOnlyMounts=false"],
                    ["  - feature-gates=CSIMigrationPortworx=false,RecursiveReadOnlyMounts=false"])

    def test_flow_list_becomes_block(self):
        new = flag_files.config_list_update(K3S_CONFIG, "kube-controller-manager-arg", {"flex-volume-plugin-dir": FLEX_NEW}, self.P)
        assert_only(K3S_CONFIG, new, ['kube-controller-manager-arg: ["flex-volume-plugin-dir=%s"]' % FLEX_OLD],
                    ["kube-controller-manager-arg:", "  - flex-volume-plugin-dir=" + FLEX_NEW])

    def test_missing_key_created_at_the_end(self):
        new = flag_files.config_list_update(K3S_CONFIG, "kube-apiserver-arg", {"feature-gates": "A=true"}, self.P)
        assert new == K3S_CONFIG + "kube-apiserver-arg:\n  - feature-gates=A=true\n"

    @pytest.mark.parametrize("text, expected", [
        (None, "kubelet-arg:\n- a=b\n"),
        ("", "kubelet-arg:\n- a=b\n"),
        ("# comments only", "# comments only\nkubelet-arg:\n- a=b\n"),
        ("kubelet-arg:\n", "kubelet-arg:\n- a=b\n"),
        ('kubelet-arg: "x=y"\nother: 1\n', "kubelet-arg:\n- x=y\n- a=b\nother: 1\n"),
        ("token: abc\nkubelet-arg: []   # none yet\n", "token: abc\nkubelet-arg:\n- a=b\n"),
    ])
    def test_other_shapes(self, text, expected):
        assert flag_files.config_list_update(text, "kubelet-arg", {"a": "b"}, self.P) == expected

    def test_remove_all(self):
        new = flag_files.config_list_update(K3S_CONFIG, "kubelet-arg", {
            "volume-plugin-dir": None, "max-pods": None, "feature-gates": None}, self.P)
        removed, added = changes_of(K3S_CONFIG, new)
        assert added == ["kubelet-arg: []"]
        assert removed[0] == "kubelet-arg:" and len(removed) == 5

    def test_idempotent(self):
        for key, changes in [("kubelet-arg", {"volume-plugin-dir": FLEX_OLD, "max-pods": "150", "x": None}),
                             ("kube-controller-manager-arg", {"flex-volume-plugin-dir": FLEX_OLD}),
                             ("kube-apiserver-arg", {"x": None})]:
            assert flag_files.config_list_update(K3S_CONFIG, key, changes, self.P) is K3S_CONFIG

    @pytest.mark.parametrize("text, line", [
        ("write-kubeconfig-mode: '0644'\nkubelet-arg: [\"a=b\"\n", 3),
        ("kubelet-arg:\n  - a=b\n  - {x: 1}\n", 3),
        ("a: 1\nkubelet-arg: 5\n", 2),
        ("- just\n- a list\n", 1),
        ("a: 1\n---\nb: 2\n", 2),
        ("a: 1\n  b: 2\n", 2),
    ])
    def test_malformed(self, text, line):
        for call in (lambda: flag_files.config_list_read(text, "kubelet-arg", self.P),
                     lambda: flag_files.config_list_update(text, "kubelet-arg", {"a": "b"}, self.P)):
            with pytest.raises(FlagFileError) as exc:
                call()
            assert_error(exc, self.P, line)

    @pytest.mark.parametrize("bad", ["  - 'max-pods=150", '   - "max-pods=150"', "  - max-pods: 150: x"])
    def test_malformed_real_config(self, bad):
        broken = K3S_CONFIG.replace('  - "max-pods=150"', bad)
        with pytest.raises(FlagFileError) as exc:
            flag_files.config_list_update(broken, "kubelet-arg", {"max-pods": "1"}, self.P)
        assert_error(exc, self.P, 10)


# ---------------------------------------------------------------------------------------
# KubeletConfiguration


class TestKubeletConfig:
    P = "/var/lib/kubelet/config.yaml"
    KS = "/etc/kubernetes/kubelet-config.yaml"

    def test_read(self):
        config = flag_files.kubelet_config_read(KUBEADM_KUBELET_CONFIG, self.P)
        assert config["cgroupDriver"] == "systemd"
        assert config["logging"]["options"]["json"]["infoBufferSize"] == "0"
        assert flag_files.kubelet_config_read(KUBESPRAY_KUBELET_CONFIG, self.KS)["featureGates"] == {
            "CSIMigrationPortworx": True, "RecursiveReadOnlyMounts": False}

    def test_no_change_is_byte_identical(self):
        assert flag_files.kubelet_config_update(KUBEADM_KUBELET_CONFIG, {}, self.P) == (KUBEADM_KUBELET_CONFIG, [])
        new, notes = flag_files.kubelet_config_update(
            KUBEADM_KUBELET_CONFIG, {"cgroupDriver": "systemd", "volumePluginDir": None, "featureGates": {"X": None}}, self.P)
        assert new is KUBEADM_KUBELET_CONFIG and notes == []

    def test_set_one_field_changes_one_line(self):
        new, notes = flag_files.kubelet_config_update(KUBEADM_KUBELET_CONFIG, {"healthzPort": 10249}, self.P)
        assert notes == []
        assert_only(KUBEADM_KUBELET_CONFIG, new, ["healthzPort: 10248"], ["healthzPort: 10249"])

    def test_volume_plugin_dir_and_feature_gates_sorted_in(self):
        new, notes = flag_files.kubelet_config_update(
            KUBEADM_KUBELET_CONFIG, {"volumePluginDir": FLEX_NEW, "featureGates": {"A": True}}, self.P)
        assert notes == []
        assert_only(KUBEADM_KUBELET_CONFIG, new, [], ["featureGates:", "  A: true", "volumePluginDir: " + FLEX_NEW])
        lines = new.splitlines()
        assert lines.index("featureGates:") == lines.index("cpuManagerReconcilePeriod: 0s") + 1
        assert lines.index("volumePluginDir: " + FLEX_NEW) == lines.index("volumeStatsAggPeriod: 0s") - 1
        # merge: other gates never touched, None removes one
        newer, notes = flag_files.kubelet_config_update(new, {"featureGates": {"B": False}}, self.P)
        assert_only(new, newer, [], ["  B: false"])
        gone, notes = flag_files.kubelet_config_update(newer, {"featureGates": {"A": None, "B": None}, "volumePluginDir": None}, self.P)
        assert gone == KUBEADM_KUBELET_CONFIG

    def test_replace_and_remove(self):
        new, notes = flag_files.kubelet_config_update(
            KUBEADM_KUBELET_CONFIG, {"logging": None, "memorySwap": {"swapBehavior": "LimitedSwap"}}, self.P)
        assert notes == []
        assert_only(KUBEADM_KUBELET_CONFIG, new, [
            "logging:", "  flushFrequency: 0", "  options:", "    json:", '      infoBufferSize: "0"',
            "  verbosity: 0", "memorySwap: {}"], ["memorySwap:", "  swapBehavior: LimitedSwap"])

    def test_in_place_editor_matches_go_dump(self, monkeypatch):
        changes = {"volumePluginDir": FLEX_NEW, "featureGates": {"A": True}, "logging": None,
                   "clusterDNS": ["10.96.0.10", "10.96.0.11"], "authentication": {"anonymous": {"enabled": True}}}
        dumped, notes = flag_files.kubelet_config_update(KUBEADM_KUBELET_CONFIG, changes, self.P)
        monkeypatch.setattr(flag_files, "_go_layout", lambda text, data: False)
        assert flag_files.kubelet_config_update(KUBEADM_KUBELET_CONFIG, changes, self.P) == (dumped, [])

    def test_kubespray_comments_survive(self):
        new, notes = flag_files.kubelet_config_update(KUBESPRAY_KUBELET_CONFIG, {
            "volumePluginDir": FLEX_NEW, "maxPods": 200, "kubeReserved": None,
            "featureGates": {"RecursiveReadOnlyMounts": True, "NewGate": False}}, self.KS)
        assert notes == []
        assert_only(KUBESPRAY_KUBELET_CONFIG, new,
                    ["maxPods: 110", "kubeReserved:", "  cpu: 200m", "  memory: 512M", "  RecursiveReadOnlyMounts: false"],
                    ["maxPods: 200", "  RecursiveReadOnlyMounts: true", "  NewGate: false", "volumePluginDir: " + FLEX_NEW])
        assert "  CSIMigrationPortworx: true   # keep this comment" in new
        again, notes = flag_files.kubelet_config_update(new, {"maxPods": 200, "featureGates": {"NewGate": False}}, self.KS)
        assert again is new and notes == []

    ANCHORED = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# reserved resources shared by two fields
reserved: &reserved
  cpu: 100m
kubeReserved: *reserved
systemReserved: *reserved
clusterDNS:
    - 10.0.0.1   # node-local DNS
maxPods: 110
"""

    def test_ruamel_detected_when_installed(self):
        assert flag_files.HAS_RUAMEL == (importlib.util.find_spec("ruamel") is not None
                                         and importlib.util.find_spec("ruamel.yaml") is not None)

    def test_ruamel_round_trip_fallback(self):
        if not flag_files.HAS_RUAMEL:
            pytest.skip("ruamel.yaml is not installed")
        new, notes = flag_files.kubelet_config_update(self.ANCHORED, {"kubeReserved": {"cpu": "200m"}, "maxPods": 111}, self.KS)
        assert any("ruamel.yaml" in n for n in notes)
        assert_only(self.ANCHORED, new, ["kubeReserved: *reserved", "maxPods: 110"],
                    ["kubeReserved:", "  cpu: 200m", "maxPods: 111"])

    def test_pyyaml_fallback_says_comments_were_lost(self, monkeypatch):
        monkeypatch.setattr(flag_files, "HAS_RUAMEL", False)
        new, notes = flag_files.kubelet_config_update(self.ANCHORED, {"kubeReserved": {"cpu": "200m"}}, self.KS)
        assert "comments were not preserved (ruamel.yaml not installed)" in notes
        data = yaml.safe_load(new)
        assert data["kubeReserved"] == {"cpu": "200m"} and data["systemReserved"] == {"cpu": "100m"}

    def test_anchors_untouched_are_edited_in_place(self):
        new, notes = flag_files.kubelet_config_update(self.ANCHORED, {"maxPods": 111}, self.KS)
        assert notes == []
        assert_only(self.ANCHORED, new, ["maxPods: 110"], ["maxPods: 111"])

    @pytest.mark.parametrize("text, line", [
        ("apiVersion: v1\nkind: Pod\n", 2),
        ("kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v2\n", 2),
        ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: [\n", 4),
        ("- a\n", 1),
    ])
    def test_refuses(self, text, line):
        for call in (lambda: flag_files.kubelet_config_read(text, self.P),
                     lambda: flag_files.kubelet_config_update(text, {"maxPods": 1}, self.P)):
            with pytest.raises(FlagFileError) as exc:
                call()
            assert_error(exc, self.P, line)

    def test_refuses_missing_and_bad_changes(self):
        with pytest.raises(FlagFileError):
            flag_files.kubelet_config_update(None, {"maxPods": 1}, self.P)
        for changes in ({"kind": "Other"}, {"featureGates": ["A"]}, {"featureGates": {"A": "yes"}}):
            with pytest.raises(FlagFileError):
                flag_files.kubelet_config_update(KUBEADM_KUBELET_CONFIG, changes, self.P)

    def test_malformed_real_config(self):
        broken = KUBEADM_KUBELET_CONFIG.replace("  mode: Webhook\n", "  mode: Webhook\n bad: indent\n")
        with pytest.raises(FlagFileError) as exc:
            flag_files.kubelet_config_read(broken, self.P)
        assert_error(exc, self.P, 12)
