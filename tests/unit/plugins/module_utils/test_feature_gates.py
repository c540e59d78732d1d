# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/feature_gates.py against the reference notes, section 2
(feature gates and flags across versions).

Every GATES and FLAGS row is checked at its boundary releases from EXPECTED_GATES and
EXPECTED_FLAGS below, literals written independently of the module's table, so a typo in
either fails a test.
Run: PYTHONPATH=.cache/collections .venv/bin/python -m pytest -q tests/unit/plugins/module_utils/test_feature_gates.py
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.kubestorage.enablement.plugins.module_utils import feature_gates as fg

WRAP = "failed to set feature gates from initial flags-based config: "
COMPONENTS = ("kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

# name: (alpha, beta, ga, removed, locked-from), None where there is no such release.
# locked-from None means "locked from GA".
EXPECTED_GATES = {
    "MountPropagation": ("1.8", "1.10", "1.12", "1.14", None),
    "CSIPersistentVolume": ("1.9", "1.10", "1.13", "1.16", None),
    "KubeletPluginsWatcher": ("1.11", "1.12", "1.13", "1.16", None),
    "CSIBlockVolume": ("1.11", "1.14", "1.18", "1.21", None),
    "CSIDriverRegistry": ("1.12", "1.14", "1.18", "1.21", None),
    "CSINodeInfo": ("1.12", "1.14", "1.17", "1.21", None),
    "VolumeSnapshotDataSource": ("1.12", "1.17", "1.20", "1.22", None),
    "ExpandCSIVolumes": ("1.14", "1.16", "1.24", "1.27", None),
    "CSIInlineVolume": ("1.15", "1.16", "1.25", "1.27", None),
    "CSIMigration": ("1.14", "1.17", "1.25", "1.27", None),
    "CSIMigrationOpenStack": (None, None, None, "1.26", None),
    "LocalStorageCapacityIsolation": ("1.7", "1.10", "1.25", "1.27", None),
    "ReadWriteOncePod": ("1.22", "1.27", "1.29", "1.31", None),
    "HonorPVReclaimPolicy": ("1.23", "1.31", "1.33", None, None),
    "RecoverVolumeExpansionFailure": ("1.23", "1.32", "1.34", None, None),
    "VolumeAttributesClass": ("1.29", "1.31", "1.34", None, "1.36"),
}

# (component, flag): (deprecated, removed)
EXPECTED_FLAGS = {
    ("kubelet", "allow-privileged"): ("1.10", "1.15"),
    ("kubelet", "network-plugin"): (None, "1.24"),
    ("kubelet", "cni-bin-dir"): (None, "1.24"),
    ("kubelet", "cni-conf-dir"): (None, "1.24"),
    ("kubelet", "container-runtime"): ("1.24", "1.27"),
    ("kube-apiserver", "allow-privileged"): (None, None),
}


def minor(text):
    return int(text.split(".")[1])


def prev(text):
    return "1.%d" % (minor(text) - 1)


def status_before(row, release):
    """The expected status of a true gate in the minor before ``release``, from the literal."""
    alpha, beta, ga = row[:3]
    before = minor(release) - 1
    for stage, name in ((ga, "ga"), (beta, "beta"), (alpha, "alpha")):
        if stage and before >= minor(stage):
            return name
    if alpha or beta or ga:
        return "not_yet"
    return "accepted"


def gate_cases():
    """(name, version, value, status) at every boundary of every expected row."""
    cases = []
    for name, row in EXPECTED_GATES.items():
        alpha, beta, ga, removed, locked = row
        for stage, status in ((alpha, "alpha"), (beta, "beta"), (ga, "ga")):
            if stage:
                cases.append((name, prev(stage), True, status_before(row, stage)))
                cases.append((name, stage, True, status))
        first = alpha or beta or ga
        if first:
            cases.append((name, prev(first), False, "not_yet"))
        if ga:
            lock = locked or ga
            cases.append((name, ga, False, "locked" if lock == ga else "ga"))
            if lock != ga:
                cases.append((name, prev(lock), False, "ga"))
                cases.append((name, lock, False, "locked"))
        if removed:
            cases.append((name, prev(removed), True, "ga" if ga else "accepted"))
            cases.append((name, prev(removed), False, "locked" if ga else "accepted"))
            cases.append((name, removed, True, "removed"))
            cases.append((name, removed, False, "removed"))
            cases.append((name, "1.%d" % (minor(removed) + 5), True, "removed"))
        else:
            cases.append((name, "1.40", True, "ga"))
        if not (alpha or beta or ga):
            cases.append((name, "1.0", True, "accepted"))
    return cases


LEVELS = {"accepted": "ok", "alpha": "ok", "beta": "ok", "ga": "warn", "locked": "error", "removed": "error", "not_yet": "error"}


def test_gates_table_has_exactly_the_expected_rows():
    assert sorted(fg.GATES) == sorted(EXPECTED_GATES)


@pytest.mark.parametrize("name", sorted(EXPECTED_GATES))
def test_gate_row_fields(name):
    gate = fg.GATES[name]
    assert gate.name == name
    assert (gate.alpha, gate.beta, gate.ga, gate.removed, gate.locked) == EXPECTED_GATES[name]
    assert gate.components and set(gate.components) <= set(COMPONENTS)
    assert gate.note


@pytest.mark.parametrize("name,version,value,status", gate_cases(), ids=str)
def test_gate_boundaries(name, version, value, status):
    verdict = fg.check_gate(name, value, version)
    assert (verdict.status, verdict.level) == (status, LEVELS[status])
    if status in ("removed", "not_yet"):
        assert verdict.message == WRAP + "unrecognized feature gate: " + name
    elif status == "locked":
        assert verdict.message == WRAP + "cannot set feature gate %s to false, feature is locked to true" % name
    elif status == "ga":
        removed = EXPECTED_GATES[name][3]
        expected = "Setting GA feature gate %s=%s. It will be removed in a future release." % (name, "true" if value else "false")
        if removed:
            expected += " (removed in %s)" % removed
        assert verdict.message == expected


@pytest.mark.parametrize("name,version,value,status", gate_cases(), ids=str)
def test_gate_boundaries_through_filter(name, version, value, status):
    """filter_gates keeps, drops or refuses each boundary case as the policy says."""
    decision = fg.filter_gates({name: value}, version)
    strict = fg.filter_gates({name: value}, version, policy="strict")
    if status in ("accepted", "alpha", "beta"):
        for dec in (decision, strict):
            assert dec == ({name: value}, {}, [], [])
    elif status == "ga":
        for dec in (decision, strict):
            assert dec.gates == {name: value} and not dec.dropped and not dec.errors
            assert len(dec.warnings) == 1 and name in dec.warnings[0]
    elif status == "locked" or (status == "removed" and not value):
        assert decision.gates == {} and decision.dropped == {} and len(decision.errors) == 1
        assert strict.gates == {} and len(strict.errors) == 1
    else:
        assert decision.gates == {} and list(decision.dropped) == [name] and not decision.errors
        assert len(decision.warnings) == 1 and name in decision.warnings[0]
        assert strict.gates == {} and not strict.dropped and len(strict.errors) == 1


@pytest.mark.parametrize("component", COMPONENTS)
def test_error_messages_per_component(component):
    wrap = WRAP if component == "kubelet" else ""
    assert fg.check_gate("CSIPersistentVolume", True, "1.25", component) == (
        "removed", "error", wrap + "unrecognized feature gate: CSIPersistentVolume")
    assert fg.check_gate("CSIPersistentVolume", True, "1.8", component) == (
        "not_yet", "error", wrap + "unrecognized feature gate: CSIPersistentVolume")
    assert fg.check_gate("CSIMigration", False, "1.26", component) == (
        "locked", "error", wrap + "cannot set feature gate CSIMigration to false, feature is locked to true")
    assert fg.check_gate("CSIMigration", True, "1.26", component) == (
        "ga", "warn", "Setting GA feature gate CSIMigration=true. It will be removed in a future release. (removed in 1.27)")


# --- the CSIPersistentVolume=true examples -------------------------------------------------

def test_csi_persistent_volume_on_1_10_is_written():
    assert fg.check_gate("CSIPersistentVolume", True, "v1.10.13") == (
        "beta", "ok", "CSIPersistentVolume is beta in kubelet 1.10; CSIPersistentVolume=true is accepted")
    decision = fg.filter_gates({"CSIPersistentVolume": True, "MountPropagation": True}, "1.10")
    assert decision == ({"CSIPersistentVolume": True, "MountPropagation": True}, {}, [], [])
    assert fg.format_gates(decision.gates) == "CSIPersistentVolume=true,MountPropagation=true"


def test_csi_persistent_volume_on_1_25_is_dropped_with_warning():
    decision = fg.filter_gates({"CSIPersistentVolume": True}, "Kubernetes v1.25.3")
    assert decision.gates == {}
    assert decision.errors == []
    assert decision.dropped == {
        "CSIPersistentVolume": "removed in 1.16: kubelet 1.25 would refuse to start with "
                               "'failed to set feature gates from initial flags-based config: unrecognized feature gate: CSIPersistentVolume'"}
    assert decision.warnings == [
        "CSIPersistentVolume=true on kubelet 1.25: the gate was removed in 1.16; kubelet 1.25 would refuse to start with "
        "'failed to set feature gates from initial flags-based config: unrecognized feature gate: CSIPersistentVolume'. "
        "Dropped. Fix: remove CSIPersistentVolume from the feature gates (the feature is always on there)."]


def test_csi_persistent_volume_on_1_25_is_an_error_under_strict():
    decision = fg.filter_gates({"CSIPersistentVolume": True}, "1.25", policy="strict")
    assert decision.gates == {}
    assert decision.dropped == {}
    assert decision.warnings == []
    assert decision.errors == [
        "CSIPersistentVolume=true on kubelet 1.25: the gate was removed in 1.16; kubelet 1.25 would refuse to start with "
        "'failed to set feature gates from initial flags-based config: unrecognized feature gate: CSIPersistentVolume'. "
        "Fix: remove CSIPersistentVolume from the feature gates (policy drop_obsolete would drop it)."]


def test_csi_persistent_volume_on_1_25_apiserver_is_not_wrapped():
    decision = fg.filter_gates({"CSIPersistentVolume": True}, "1.25", component="kube-apiserver")
    assert decision.dropped == {
        "CSIPersistentVolume": "removed in 1.16: kube-apiserver 1.25 would refuse to start with 'unrecognized feature gate: CSIPersistentVolume'"}


def test_removed_gate_set_false_is_an_error():
    decision = fg.filter_gates({"MountPropagation": False, "CSIMigration": True}, "1.25")
    assert decision.gates == {"CSIMigration": True}
    assert decision.dropped == {}
    assert decision.errors == [
        "MountPropagation=false on kubelet 1.25: the gate was removed in 1.14; kubelet 1.25 would refuse to start with "
        "'failed to set feature gates from initial flags-based config: unrecognized feature gate: MountPropagation'. "
        "The feature can no longer be turned off there. Fix: remove MountPropagation from the feature gates and stop relying "
        "on it being off, or stay below 1.14."]


def test_not_yet_gate_is_dropped_with_warning():
    decision = fg.filter_gates({"CSIMigration": True}, "1.13")
    assert decision.gates == {}
    assert decision.errors == []
    assert decision.warnings == [
        "CSIMigration=true on kubelet 1.13: the gate only exists from 1.14; kubelet 1.13 would refuse to start with "
        "'failed to set feature gates from initial flags-based config: unrecognized feature gate: CSIMigration'. "
        "Dropped. Fix: remove CSIMigration from the feature gates for releases before 1.14."]


# --- locked, GA, unknown ------------------------------------------------------------------

def test_locked_false_is_an_error():
    assert fg.check_gate("ExpandCSIVolumes", False, "1.24") == (
        "locked", "error", WRAP + "cannot set feature gate ExpandCSIVolumes to false, feature is locked to true")
    for policy in ("drop_obsolete", "strict"):
        decision = fg.filter_gates({"ExpandCSIVolumes": False}, "1.24", policy=policy)
        assert decision.gates == {}
        assert decision.dropped == {}
        assert decision.errors == [
            "ExpandCSIVolumes=false on kubelet 1.24: ExpandCSIVolumes is GA and locked to true from 1.24; kubelet 1.24 would refuse to start with "
            "'failed to set feature gates from initial flags-based config: cannot set feature gate ExpandCSIVolumes to false, feature is locked to true'. "
            "Fix: remove ExpandCSIVolumes from the feature gates or set it to true."]


def test_ga_true_warns_and_is_kept():
    assert fg.check_gate("CSIMigration", True, "1.25") == (
        "ga", "warn", "Setting GA feature gate CSIMigration=true. It will be removed in a future release. (removed in 1.27)")
    assert fg.check_gate("HonorPVReclaimPolicy", True, "1.33", "kube-controller-manager") == (
        "ga", "warn", "Setting GA feature gate HonorPVReclaimPolicy=true. It will be removed in a future release.")
    decision = fg.filter_gates({"CSIMigration": True}, "1.26")
    assert decision.gates == {"CSIMigration": True}
    assert decision.dropped == {}
    assert decision.errors == []
    assert decision.warnings == [
        "CSIMigration=true kept for kubelet 1.26: CSIMigration is GA from 1.25 and kubelet logs "
        "'Setting GA feature gate CSIMigration=true. It will be removed in a future release. (removed in 1.27)'. "
        "Fix: remove CSIMigration from the feature gates (the feature is on anyway); from 1.27 the gate would stop kubelet from starting."]


def test_ga_unlocked_false_warns_and_is_kept():
    assert fg.check_gate("VolumeAttributesClass", False, "1.35", "kube-apiserver") == (
        "ga", "warn", "Setting GA feature gate VolumeAttributesClass=false. It will be removed in a future release.")
    decision = fg.filter_gates({"VolumeAttributesClass": False}, "1.34", "kube-apiserver", "strict")
    assert decision.gates == {"VolumeAttributesClass": False}
    assert decision.errors == []
    assert decision.warnings == [
        "VolumeAttributesClass=false kept for kube-apiserver 1.34: VolumeAttributesClass is GA from 1.34 and kube-apiserver logs "
        "'Setting GA feature gate VolumeAttributesClass=false. It will be removed in a future release.'. "
        "Fix: stop disabling VolumeAttributesClass; it is GA and setting it to false will be refused once the gate is locked (from 1.36)."]


def test_alpha_and_no_stage_messages():
    assert fg.check_gate("MountPropagation", False, "1.9", "kube-apiserver") == (
        "alpha", "ok", "MountPropagation is alpha in kube-apiserver 1.9; MountPropagation=false is accepted")
    assert fg.check_gate("CSIMigrationOpenStack", True, "1.25") == (
        "accepted", "ok", "CSIMigrationOpenStack=true is accepted by kubelet 1.25 (no stage data in the collection's table; removed in 1.26)")


def test_unknown_gate_passes_through():
    assert fg.check_gate("SomeFutureGate", True, "1.25") == ("unknown", "ok", "SomeFutureGate is not in the collection's table; not checked")
    gates = {"ZGate": False, "CSIPersistentVolume": True, "AGate": True, "CSIMigration": False}
    before = copy.deepcopy(gates)
    decision = fg.filter_gates(gates, "1.13")
    assert gates == before
    assert decision.gates == {"ZGate": False, "CSIPersistentVolume": True, "AGate": True}
    assert list(decision.dropped) == ["CSIMigration"]
    assert decision.errors == []
    unknown = [w for w in decision.warnings if "not in the collection's table" in w]
    assert unknown == [
        "feature gates not in the collection's table, passed through unchecked for kubelet 1.13: AGate, ZGate. "
        "Check them against the Kubernetes feature-gates reference for 1.13."]


def test_filter_gates_accepts_go_bool_strings():
    assert fg.filter_gates({"CSIPersistentVolume": "True"}, "1.10").gates == {"CSIPersistentVolume": True}


@pytest.mark.parametrize("call", [
    lambda: fg.filter_gates({"CSIMigration": True}, "1.25", policy="lenient"),
    lambda: fg.filter_gates({"CSIMigration": True}, "1.25", component="kube-proxy"),
    lambda: fg.filter_gates({"CSIMigration": "maybe"}, "1.25"),
    lambda: fg.filter_gates("CSIMigration=true", "1.25"),
    lambda: fg.check_gate("CSIMigration", True, "1.25", "kubectl"),
    lambda: fg.check_flag("kubelet", "--", "1.25"),
    lambda: fg.filter_flags("kubelet", {"v": "2"}, "1.25", policy="lenient"),
    lambda: fg.filter_flags("kubelet", ["v"], "1.25"),
])
def test_bad_arguments_raise_gate_error(call):
    with pytest.raises(fg.GateError) as info:
        call()
    assert info.value.msg
    assert str(info.value) == info.value.msg


# --- flags --------------------------------------------------------------------------------

def test_flags_table_has_exactly_the_expected_rows():
    assert sorted(fg.FLAGS) == sorted(EXPECTED_FLAGS)


@pytest.mark.parametrize("key", sorted(EXPECTED_FLAGS))
def test_flag_row_fields(key):
    row = fg.FLAGS[key]
    assert (row.component, row.name) == key
    assert (row.deprecated, row.removed) == EXPECTED_FLAGS[key]
    assert row.note


def flag_cases():
    cases = []
    for (component, name), (deprecated, removed) in EXPECTED_FLAGS.items():
        if removed:
            cases.append((component, name, prev(removed), "accepted"))
            cases.append((component, name, removed, "removed"))
            cases.append((component, name, "1.%d" % (minor(removed) + 6), "removed"))
        else:
            cases.append((component, name, "1.8", "accepted"))
            cases.append((component, name, "1.33", "accepted"))
        if deprecated:
            cases.append((component, name, prev(deprecated), "accepted"))
            cases.append((component, name, deprecated, "accepted"))
    return cases


@pytest.mark.parametrize("component,name,version,status", flag_cases(), ids=str)
@pytest.mark.parametrize("dashes", ["", "-", "--"])
def test_flag_boundaries(component, name, version, status, dashes):
    deprecated, removed = EXPECTED_FLAGS[(component, name)]
    verdict = fg.check_flag(component, dashes + name, version)
    if status == "removed":
        assert verdict == ("removed", "error", "unknown flag: --" + name)
    else:
        expected = "--%s is accepted by %s %s" % (name, component, version)
        if deprecated and minor(version) >= minor(deprecated):
            expected += " (deprecated since %s%s)" % (deprecated, "; removed in %s" % removed if removed else "")
        assert verdict == ("accepted", "ok", expected)
    decision = fg.filter_flags(component, {dashes + name: "true"}, version, "drop_obsolete")
    strict = fg.filter_flags(component, {dashes + name: "true"}, version, "strict")
    removal = fg.filter_flags(component, {dashes + name: None}, version, "strict")
    assert removal == ({dashes + name: None}, {}, [], [])
    if status == "removed":
        assert decision.flags == {} and list(decision.dropped) == [dashes + name] and len(decision.warnings) == 1
        assert not decision.errors
        assert strict.flags == {} and not strict.dropped and len(strict.errors) == 1
    else:
        for dec in (decision, strict):
            assert dec == ({dashes + name: "true"}, {}, [], [])


def test_allow_privileged_kubelet_1_14_vs_1_15():
    assert fg.check_flag("kubelet", "--allow-privileged", "1.14") == (
        "accepted", "ok", "--allow-privileged is accepted by kubelet 1.14 (deprecated since 1.10; removed in 1.15)")
    assert fg.check_flag("kubelet", "--allow-privileged", "v1.15.0") == ("removed", "error", "unknown flag: --allow-privileged")
    decision = fg.filter_flags("kubelet", {"--allow-privileged": "true", "--volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}, "1.15")
    assert decision.flags == {"--volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}
    assert decision.dropped == {"--allow-privileged": "removed in 1.15: kubelet 1.15 would refuse to start with 'unknown flag: --allow-privileged'"}
    assert decision.warnings == [
        "--allow-privileged=true on kubelet 1.15: the flag was removed in 1.15; kubelet 1.15 would refuse to start with "
        "'unknown flag: --allow-privileged'; dropped. Remove --allow-privileged from your variables to silence this warning."]
    assert decision.errors == []
    strict = fg.filter_flags("kubelet", {"allow-privileged": "true"}, "1.15", "strict")
    assert strict.errors == [
        "--allow-privileged=true on kubelet 1.15: the flag was removed in 1.15; kubelet 1.15 would refuse to start with "
        "'unknown flag: --allow-privileged'. Fix: remove --allow-privileged (policy drop_obsolete would drop it)."]
    assert fg.filter_flags("kubelet", {"--allow-privileged": "true"}, "1.14", "strict") == ({"--allow-privileged": "true"}, {}, [], [])


def test_apiserver_allow_privileged_accepted_on_1_33():
    assert fg.check_flag("kube-apiserver", "--allow-privileged", "1.33") == (
        "accepted", "ok", "--allow-privileged is accepted by kube-apiserver 1.33")
    assert fg.filter_flags("kube-apiserver", {"--allow-privileged": "true"}, "1.33", "strict") == (
        {"--allow-privileged": "true"}, {}, [], [])


def test_unlisted_flag_is_accepted():
    assert fg.check_flag("kubelet", "--volume-plugin-dir", "1.33") == (
        "accepted", "ok", "--volume-plugin-dir is not in the collection's flag table for kubelet; assumed accepted")


# --- parse / format -----------------------------------------------------------------------

def test_format_gates_sorted():
    assert fg.format_gates({"B": False, "A": True, "CSIMigration": "true"}) == "A=true,B=false,CSIMigration=true"
    assert fg.format_gates({}) == ""


@pytest.mark.parametrize("text,expected", [
    ("A=true,B=false", {"A": True, "B": False}),
    (" A = True , B=FALSE ", {"A": True, "B": False}),
    ("A=1,B=0,C=t,D=F", {"A": True, "B": False, "C": True, "D": False}),
    ("A=true,,B=false,", {"A": True, "B": False}),
    ("A=false,A=true", {"A": True}),
    ("", {}),
])
def test_parse_gates(text, expected):
    assert fg.parse_gates(text) == expected


def test_parse_format_round_trip():
    gates = {"MountPropagation": True, "CSIPersistentVolume": True, "CSIMigration": False, "VolumeAttributesClass": True}
    text = fg.format_gates(gates)
    assert text == "CSIMigration=false,CSIPersistentVolume=true,MountPropagation=true,VolumeAttributesClass=true"
    assert fg.parse_gates(text) == gates
    assert fg.format_gates(fg.parse_gates(" VolumeAttributesClass=True, CSIMigration = false")) == "CSIMigration=false,VolumeAttributesClass=true"
    assert fg.parse_gates({"A": "True", "B": False}) == {"A": True, "B": False}


@pytest.mark.parametrize("text,item", [
    ("A=true,B", "B"),
    ("A=yes", "A=yes"),
    ("A=true,B=tRuE", "B=tRuE"),
    ("=true", "=true"),
    ("A B=true", "A B=true"),
    ("A=true, C= ", "C="),
])
def test_parse_gates_names_bad_item(text, item):
    with pytest.raises(fg.GateError) as info:
        fg.parse_gates(text)
    assert repr(item) in info.value.msg


@pytest.mark.parametrize("value", [None, 1, ["A=true"]])
def test_parse_gates_rejects_non_strings(value):
    with pytest.raises(fg.GateError):
        fg.parse_gates(value)


@pytest.mark.parametrize("gates", [{"A": "maybe"}, {"A=B": True}, {"": True}, "A=true"])
def test_format_gates_rejects_bad_input(gates):
    with pytest.raises(fg.GateError):
        fg.format_gates(gates)


# --- versions -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("1.25", (1, 25, 0)),
    ("v1.25.3", (1, 25, 3)),
    ("1.25.3-gke.100", (1, 25, 3)),
    ("Kubernetes v1.25.3", (1, 25, 3)),
    ("Kubernetes v1.33.1\n", (1, 33, 1)),
    ("v1.27.4+k3s1", (1, 27, 4)),
    ("1.10", (1, 10, 0)),
    ((1, 25), (1, 25, 0)),
])
def test_parse_version(text, expected):
    assert fg.parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "1", "v1", "1.x", "latest", "1.25.3.4", "Kubernetes", "version 1.25", "1,25", None, 1.25, (1,), (1, "25")])
def test_bad_versions_raise(text):
    with pytest.raises(fg.GateError) as info:
        fg.parse_version(text)
    assert "invalid Kubernetes version" in info.value.msg
    assert repr(text) in info.value.msg


def test_bad_version_in_checks_raises():
    with pytest.raises(fg.GateError):
        fg.check_gate("CSIMigration", True, "one.twenty")
    with pytest.raises(fg.GateError):
        fg.check_flag("kubelet", "allow-privileged", "")


def test_version_1_10_sorts_after_1_9():
    # string comparison would put "1.10" before "1.9"
    assert fg.check_gate("MountPropagation", True, "1.9").status == "alpha"
    assert fg.check_gate("MountPropagation", True, "1.10").status == "beta"
    assert fg.check_gate("CSIPersistentVolume", True, "1.9.11").status == "alpha"
