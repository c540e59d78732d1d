# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes feature gates and component flags across versions, checked the way the
components check them.

Plain Python 3.8+ (no Ansible imports, no third-party imports): it runs on managed nodes,
and unit tests call it directly. Modules only map parameters and results.

What a component does with a feature gate (k8s.io/component-base/featuregate, SetFromMap):
- unknown gate (removed, or not yet added): refuses to start with
  ``unrecognized feature gate: NAME``; kubelet wraps every feature gate error as
  ``failed to set feature gates from initial flags-based config: ...``;
- gate locked to its default and set to the other value: refuses to start with
  ``cannot set feature gate NAME to false, feature is locked to true``;
- GA gate set explicitly: starts, and logs
  ``Setting GA feature gate NAME=true. It will be removed in a future release.``;
- alpha or beta gate: accepted.
A removed command line flag makes the component refuse to start with ``unknown flag: --NAME``.

Every kube component of a release registers the same gate table (pkg/features), so whether a
gate is accepted does not depend on the component; ``Gate.components`` only says where the
gate has an effect.

Versions are compared on (major, minor) only: gates and flags change at minor releases.
"""

from __future__ import annotations

import collections
import re

COMPONENTS = ("kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
POLICIES = ("drop_obsolete", "strict")

KUBELET_WRAP = "failed to set feature gates from initial flags-based config: "


class GateError(Exception):
    """Bad input (a version, a gate string, a policy). ``msg`` is the text to report."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


# One row of GATES. Versions are "1.x" strings (the first minor release with that state) or None.
#   name        the gate name, exactly as the components spell it
#   alpha       first release that knows the gate (as alpha)
#   beta        first release where it is beta
#   ga          first release where it is GA (stable)
#   removed     first release that no longer accepts it (``unrecognized feature gate``)
#   components  where the gate has an effect (informational, see the module docstring)
#   note        sources and remarks
#   locked      first release where the GA gate is locked to true; None means "from ``ga``"
#               (setting the gate to false from then on is refused)
# A gate with no stage data at all (only ``removed``) is accepted before its removal.
Gate = collections.namedtuple("Gate", ["name", "alpha", "beta", "ga", "removed", "components", "note", "locked"], defaults=(None,))

# One row of FLAGS: a component's command line flag (name without dashes).
#   deprecated  first release that marks it deprecated (informational), or None if unknown
#   removed     first release that no longer accepts it (``unknown flag: --NAME``), or None
Flag = collections.namedtuple("Flag", ["component", "name", "deprecated", "removed", "note"])

Verdict = collections.namedtuple("Verdict", ["status", "level", "message"])
GateDecision = collections.namedtuple("GateDecision", ["gates", "dropped", "warnings", "errors"])
FlagDecision = collections.namedtuple("FlagDecision", ["flags", "dropped", "warnings", "errors"])

KUBELET = "kubelet"
APISERVER = "kube-apiserver"
KCM = "kube-controller-manager"
SCHEDULER = "kube-scheduler"

_GATE_ROWS = (
    # name, alpha, beta, ga, removed, components, note[, locked]
    Gate("MountPropagation", "1.8", "1.10", "1.12", "1.14", (KUBELET, APISERVER),
         "upstream.md section 2; in 1.9 CSI needed it on the apiserver and kubelet"),
    Gate("CSIPersistentVolume", "1.9", "1.10", "1.13", "1.16", (KUBELET, APISERVER, KCM),
         "upstream.md section 2; in 1.9 the apiserver also needed --runtime-config=storage.k8s.io/v1alpha1=true"),
    Gate("KubeletPluginsWatcher", "1.11", "1.12", "1.13", "1.16", (KUBELET,),
         "upstream.md section 2"),
    Gate("CSIBlockVolume", "1.11", "1.14", "1.18", "1.21", (KUBELET, APISERVER, KCM),
         "upstream.md section 2"),
    # CSIDriverRegistry and CSINodeInfo: some sources say removed in 1.22; the earlier release
    # (1.21) is the danger line.
    Gate("CSIDriverRegistry", "1.12", "1.14", "1.18", "1.21", (KUBELET, APISERVER, KCM, SCHEDULER),
         "upstream.md section 2; removal 1.21 (some sources: 1.22, the earlier one is used)"),
    Gate("CSINodeInfo", "1.12", "1.14", "1.17", "1.21", (KUBELET, APISERVER, KCM, SCHEDULER),
         "upstream.md section 2; removal 1.21 (some sources: 1.22, the earlier one is used)"),
    Gate("VolumeSnapshotDataSource", "1.12", "1.17", "1.20", "1.22", (APISERVER, KCM),
         "upstream.md section 2"),
    Gate("ExpandCSIVolumes", "1.14", "1.16", "1.24", "1.27", (KUBELET, APISERVER, KCM),
         "upstream.md section 2; kubespray #10250 and #10448 recommended it after its removal"),
    Gate("CSIInlineVolume", "1.15", "1.16", "1.25", "1.27", (KUBELET, APISERVER, KCM, SCHEDULER),
         "upstream.md section 2"),
    Gate("CSIMigration", "1.14", "1.17", "1.25", "1.27", (KUBELET, KCM, SCHEDULER),
         "upstream.md section 2; kubespray #10250 and #10448 recommended it after its removal"),
    # CSIMigrationOpenStack: only the removal is taken as known (upstream.md); without stage
    # data it is accepted (status "accepted") before 1.26. (The kubernetes/website page for the
    # gate lists alpha 1.14, beta 1.18, GA 1.24; not used here.)
    Gate("CSIMigrationOpenStack", None, None, None, "1.26", (KUBELET, KCM, SCHEDULER),
         "upstream.md section 2: removed 1.26; no stage data in the table"),
    # LocalStorageCapacityIsolation: GA 1.25, removed 1.27. kubernetes/kubernetes
    # pkg/features/kube_features.go at v1.25 has
    #   LocalStorageCapacityIsolation: {Default: true, PreRelease: featuregate.GA, LockToDefault: true}, // remove in 1.27
    # and the feature-gates docs (kubernetes/website feature-gates/LocalStorageCapacityIsolation.md)
    # list the stable stage as 1.25 to 1.26 with "removed: true".
    Gate("LocalStorageCapacityIsolation", "1.7", "1.10", "1.25", "1.27", (KUBELET, APISERVER, SCHEDULER),
         "upstream.md section 2; removal 1.27 from k/k kube_features.go v1.25 (// remove in 1.27) and the feature-gates docs"),
    # Storage gates beyond upstream.md, from the kubernetes/website feature-gates pages
    # (content/en/docs/reference/command-line-tools-reference/feature-gates/NAME.md) and
    # kubernetes/kubernetes pkg/features/kube_features.go (versioned specs).
    Gate("ReadWriteOncePod", "1.22", "1.27", "1.29", "1.31", (KUBELET, APISERVER, SCHEDULER),
         "feature-gates docs: stable 1.29 to 1.30, removed; k/k kube_features.go v1.29: LockToDefault, // remove in 1.31"),
    Gate("HonorPVReclaimPolicy", "1.23", "1.31", "1.33", None, (KCM,),
         "feature-gates docs and k/k kube_features.go: GA 1.33 LockToDefault; k/k comment plans removal in 1.36 (not confirmed, not used)"),
    Gate("RecoverVolumeExpansionFailure", "1.23", "1.32", "1.34", None, (KUBELET, APISERVER, KCM),
         "feature-gates docs and k/k kube_features.go: GA 1.34 LockToDefault; k/k comment plans removal in 1.37 (not confirmed, not used)"),
    Gate("VolumeAttributesClass", "1.29", "1.31", "1.34", None, (APISERVER, KCM, SCHEDULER),
         "feature-gates docs: GA 1.34 without a lock (false accepted with a warning); k/k kube_features.go: LockToDefault from 1.36",
         "1.36"),
)

GATES = {row.name: row for row in _GATE_ROWS}

_FLAG_ROWS = (
    Flag(KUBELET, "allow-privileged", "1.10", "1.15",
         "upstream.md section 2: deprecated, defaults to true from 1.13, removed 1.15 (CHANGELOG-1.15, k/k #77820); "
         "deprecated by k/k #57851 (see k/k #58010)"),
    Flag(KUBELET, "network-plugin", None, "1.24",
         "dockershim flag, removed with dockershim in 1.24 (k/k #106907)"),
    Flag(KUBELET, "cni-bin-dir", None, "1.24",
         "dockershim flag, removed with dockershim in 1.24 (k/k #106907)"),
    Flag(KUBELET, "cni-conf-dir", None, "1.24",
         "dockershim flag, removed with dockershim in 1.24 (k/k #106907)"),
    Flag(KUBELET, "container-runtime", "1.24", "1.27",
         "deprecated in 1.24 (k/k #107094), removed in 1.27 (k/k #114017)"),
    Flag(APISERVER, "allow-privileged", None, None,
         "upstream.md section 2: the kube-apiserver flag still exists (only kubelet's was removed)"),
)

FLAGS = {(row.component, row.name): row for row in _FLAG_ROWS}

_VERSION_RE = re.compile(r"^(?:kubernetes\s+)?v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+][0-9A-Za-z.+_-]*)?$", re.IGNORECASE)

# strconv.ParseBool, which the components use for --feature-gates values.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_version(value):
    """Return (major, minor, patch) from "1.25", "v1.25.3", "1.25.3-gke.100" or
    "Kubernetes v1.25.3" (kubelet --version). A (major, minor[, patch]) tuple of ints is
    accepted as is. Raise GateError otherwise."""
    if isinstance(value, (tuple, list)):
        if len(value) in (2, 3) and all(isinstance(part, int) and not isinstance(part, bool) and part >= 0 for part in value):
            parts = tuple(value) + (0,) * (3 - len(value))
            return parts
        raise GateError("invalid Kubernetes version %r: expected (major, minor[, patch]) integers" % (value,))
    if not isinstance(value, str):
        raise GateError("invalid Kubernetes version %r: expected a string such as 1.25, v1.25.3 or 'Kubernetes v1.25.3'" % (value,))
    match = _VERSION_RE.match(value.strip())
    if not match:
        raise GateError("invalid Kubernetes version %r: expected 1.25, v1.25.3, 1.25.3-gke.100 or 'Kubernetes v1.25.3'" % (value,))
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _minor(value):
    return parse_version(value)[:2]


def _vstr(value):
    major, minor = _minor(value)
    return "%d.%d" % (major, minor)


def _check_component(component):
    if component not in COMPONENTS:
        raise GateError("unknown component %r: expected one of %s" % (component, ", ".join(COMPONENTS)))
    return component


def _check_policy(policy):
    if policy not in POLICIES:
        raise GateError("unknown policy %r: expected one of %s" % (policy, ", ".join(POLICIES)))
    return policy


def _as_bool(value, name):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise GateError("invalid value %r for feature gate %s: expected true or false" % (value, name))


def _bool_str(value):
    return "true" if value else "false"


def _first_stage(gate):
    for stage in (gate.alpha, gate.beta, gate.ga):
        if stage:
            return stage
    return None


def _gate_error_text(text, component):
    if component == KUBELET:
        return KUBELET_WRAP + text
    return text


def _ga_text(name, value, gate):
    text = "Setting GA feature gate %s=%s. It will be removed in a future release." % (name, _bool_str(value))
    if gate.removed:
        text += " (removed in %s)" % gate.removed
    return text


def check_gate(name, value, version, component="kubelet"):
    """What ``component`` at ``version`` does with ``--feature-gates=name=value``: a Verdict."""
    ver = _minor(version)
    _check_component(component)
    value = _as_bool(value, name)
    gate = GATES.get(name)
    if gate is None:
        return Verdict("unknown", "ok", "%s is not in the collection's table; not checked" % name)
    unrecognized = _gate_error_text("unrecognized feature gate: %s" % name, component)
    if gate.removed and ver >= _minor(gate.removed):
        return Verdict("removed", "error", unrecognized)
    first = _first_stage(gate)
    if first and ver < _minor(first):
        return Verdict("not_yet", "error", unrecognized)
    if gate.ga and ver >= _minor(gate.ga):
        locked_from = gate.locked or gate.ga
        if not value and ver >= _minor(locked_from):
            return Verdict("locked", "error",
                           _gate_error_text("cannot set feature gate %s to false, feature is locked to true" % name, component))
        return Verdict("ga", "warn", _ga_text(name, value, gate))
    if gate.beta and ver >= _minor(gate.beta):
        return Verdict("beta", "ok", "%s is beta in %s %s; %s=%s is accepted" % (name, component, _vstr(version), name, _bool_str(value)))
    if gate.alpha and ver >= _minor(gate.alpha):
        return Verdict("alpha", "ok", "%s is alpha in %s %s; %s=%s is accepted" % (name, component, _vstr(version), name, _bool_str(value)))
    return Verdict("accepted", "ok",
                   "%s=%s is accepted by %s %s (no stage data in the collection's table; removed in %s)"
                   % (name, _bool_str(value), component, _vstr(version), gate.removed))


def _flag_name(flag):
    if not isinstance(flag, str) or not flag.lstrip("-").strip():
        raise GateError("invalid flag name %r" % (flag,))
    return flag.strip().lstrip("-")


def check_flag(component, flag, version):
    """Whether ``component`` at ``version`` accepts the command line flag ``flag``
    (leading dashes optional): a Verdict."""
    ver = _minor(version)
    _check_component(component)
    name = _flag_name(flag)
    row = FLAGS.get((component, name))
    if row is not None and row.removed and ver >= _minor(row.removed):
        return Verdict("removed", "error", "unknown flag: --%s" % name)
    if row is None:
        message = "--%s is not in the collection's flag table for %s; assumed accepted" % (name, component)
    elif row.deprecated and ver >= _minor(row.deprecated):
        message = "--%s is accepted by %s %s (deprecated since %s%s)" % (
            name, component, _vstr(version), row.deprecated, "; removed in %s" % row.removed if row.removed else "")
    else:
        message = "--%s is accepted by %s %s" % (name, component, _vstr(version))
    return Verdict("accepted", "ok", message)


def _gate_problem(name, value, ver, component, verdict):
    """Why ``name=value`` is refused: what the component would do, as one sentence part."""
    gate = GATES[name]
    pair = "%s=%s" % (name, _bool_str(value))
    if verdict.status == "removed":
        why = "the gate was removed in %s" % gate.removed
    elif verdict.status == "not_yet":
        why = "the gate only exists from %s" % _first_stage(gate)
    else:
        why = "%s is GA and locked to true from %s" % (name, gate.locked or gate.ga)
    return "%s on %s %s: %s; %s %s would refuse to start with '%s'" % (pair, component, ver, why, component, ver, verdict.message)


def _ga_warning(name, value, ver, component, verdict):
    gate = GATES[name]
    head = "%s=%s kept for %s %s: %s is GA from %s and %s logs '%s'" % (
        name, _bool_str(value), component, ver, name, gate.ga, component, verdict.message)
    if value:
        fix = "Fix: remove %s from the feature gates (the feature is on anyway)" % name
        if gate.removed:
            fix += "; from %s the gate would stop %s from starting" % (gate.removed, component)
    else:
        fix = "Fix: stop disabling %s; it is GA and setting it to false will be refused once the gate is locked" % name
        if gate.locked:
            fix += " (from %s)" % gate.locked
    return "%s. %s." % (head, fix)


def filter_gates(gates, version, component="kubelet", policy="drop_obsolete"):
    """Decide what of ``gates`` (the full name -> bool map the caller means to write) is safe
    for ``component`` at ``version``. Return a GateDecision(gates, dropped, warnings, errors).

    Policy ``drop_obsolete``: a removed or not-yet gate is dropped with a warning, except a
    removed gate set to false (the feature can no longer be turned off), which is an error;
    a locked gate set to false is an error; a GA gate is kept with a warning.
    Policy ``strict``: every removed, not-yet or locked gate is an error.
    Gates not in GATES pass through untouched, with one warning naming them.
    Gates in error are neither in ``gates`` nor in ``dropped``. Write nothing while
    ``errors`` is non-empty.
    """
    if not isinstance(gates, dict):
        raise GateError("feature gates must be a mapping of name to true/false, got %r" % (gates,))
    _check_policy(policy)
    _check_component(component)
    ver = _vstr(version)
    kept = {}
    dropped = {}
    warnings = []
    errors = []
    unknown = []
    for name in sorted(gates):
        value = _as_bool(gates[name], name)
        verdict = check_gate(name, value, version, component)
        status = verdict.status
        if status == "unknown":
            unknown.append(name)
            kept[name] = value
        elif status in ("removed", "not_yet", "locked"):
            problem = _gate_problem(name, value, ver, component, verdict)
            if status == "locked":
                errors.append("%s. Fix: remove %s from the feature gates or set it to true." % (problem, name))
            elif policy == "strict":
                errors.append("%s. Fix: remove %s from the feature gates (policy drop_obsolete would drop it)." % (problem, name))
            elif status == "removed" and not value:
                errors.append("%s. The feature can no longer be turned off there. "
                              "Fix: remove %s from the feature gates and stop relying on it being off, "
                              "or stay below %s." % (problem, name, GATES[name].removed))
            else:
                gate = GATES[name]
                if status == "removed":
                    reason = "removed in %s: %s %s would refuse to start with '%s'" % (gate.removed, component, ver, verdict.message)
                    fix = "Fix: remove %s from the feature gates%s." % (name, " (the feature is always on there)" if gate.ga else "")
                else:
                    reason = "not known before %s: %s %s would refuse to start with '%s'" % (_first_stage(gate), component, ver, verdict.message)
                    fix = "Fix: remove %s from the feature gates for releases before %s." % (name, _first_stage(gate))
                dropped[name] = reason
                warnings.append("%s. Dropped. %s" % (problem, fix))
        elif status == "ga":
            kept[name] = value
            warnings.append(_ga_warning(name, value, ver, component, verdict))
        else:
            kept[name] = value
    if unknown:
        warnings.append("feature gates not in the collection's table, passed through unchecked for %s %s: %s. "
                        "Check them against the Kubernetes feature-gates reference for %s." % (component, ver, ", ".join(unknown), ver))
    return GateDecision(kept, dropped, warnings, errors)


def filter_flags(component, flags, version, policy="drop_obsolete"):
    """Decide what of ``flags`` (name -> value; None means "remove the flag") is safe for
    ``component`` at ``version``. Return a FlagDecision(flags, dropped, warnings, errors).

    A removed flag with a value is dropped with a warning (``drop_obsolete``) or is an error
    (``strict``). A removed flag whose value is None (being removed) is fine. Keys are kept as
    given (with or without dashes)."""
    if not isinstance(flags, dict):
        raise GateError("flags must be a mapping of name to value, got %r" % (flags,))
    _check_policy(policy)
    _check_component(component)
    ver = _vstr(version)
    kept = {}
    dropped = {}
    warnings = []
    errors = []
    for key in sorted(flags):
        value = flags[key]
        verdict = check_flag(component, key, version)
        if value is None or verdict.status != "removed":
            kept[key] = value
            continue
        name = _flag_name(key)
        removed = FLAGS[(component, name)].removed
        problem = "--%s=%s on %s %s: the flag was removed in %s; %s %s would refuse to start with '%s'" % (
            name, value, component, ver, removed, component, ver, verdict.message)
        if policy == "strict":
            errors.append("%s. Fix: remove --%s (policy drop_obsolete would drop it)." % (problem, name))
        else:
            dropped[key] = "removed in %s: %s %s would refuse to start with '%s'" % (removed, component, ver, verdict.message)
            warnings.append("%s; dropped. Remove --%s from your variables to silence this warning." % (problem, name))
    return FlagDecision(kept, dropped, warnings, errors)


def _check_gate_name(name, item):
    if not isinstance(name, str) or not name or re.search(r"[\s=,]", name):
        raise GateError("invalid feature gate name in %r" % (item,))
    return name


def format_gates(gates):
    """{"B": False, "A": True} -> "A=true,B=false" (sorted by name)."""
    if not isinstance(gates, dict):
        raise GateError("feature gates must be a mapping of name to true/false, got %r" % (gates,))
    items = []
    for name in sorted(gates):
        _check_gate_name(name, name)
        items.append("%s=%s" % (name, _bool_str(_as_bool(gates[name], name))))
    return ",".join(items)


def parse_gates(value):
    """"A=true, B=False" -> {"A": True, "B": False}. Values follow strconv.ParseBool, as the
    components do (1, t, T, TRUE, true, True and the false forms). Empty items are skipped;
    a later item wins over an earlier one with the same name. A mapping is accepted too.
    Raise GateError naming the bad item."""
    if isinstance(value, dict):
        return {_check_gate_name(name, name): _as_bool(val, name) for name, val in value.items()}
    if not isinstance(value, str):
        raise GateError("feature gates must be a string such as 'A=true,B=false', got %r" % (value,))
    result = {}
    for item in value.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise GateError("malformed feature gate item %r: expected NAME=true or NAME=false" % item.strip())
        name, text = item.split("=", 1)
        name = name.strip()
        _check_gate_name(name, item.strip())
        text = text.strip()
        if text in _TRUE:
            result[name] = True
        elif text in _FALSE:
            result[name] = False
        else:
            raise GateError("invalid value in feature gate item %r: expected true or false" % item.strip())
    return result
