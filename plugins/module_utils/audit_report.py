# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet storage report from facts the read-only modules gathered on every node and from the
Kubernetes API: one normalized row per node, drivers and their checksums across nodes, the API's
CSIDrivers and StorageClasses, and findings (drift and what a component would refuse).

Plain Python 3.9+ (stdlib and feature_gates only): unit tests call it directly and the
storage_audit_report module only maps parameters and writes files.

Input per node (``nodes[host]``), each fact source may be None, a skipped task result
(``skipped: true``, ignored) or a failed one (``failed: true`` with ``msg``):
- ``groups``: the node's inventory groups (``driver_missing`` compares nodes of a group);
- ``kubelet``: a kubelet_info result (``kubernetes_version``, ``layout``, ``files``, ``runtimes``,
  ``propagation``, ``kubelet``);
- ``flexvolume``: a flexvolume_driver_info result (``plugin_dir``, ``drivers``, ``problems``);
- ``kubelet_flags``: component_flags results for kubelet (check mode, no changes), in command line
  order (a later flag wins);
- ``kubelet_config``: the KubeletConfiguration (``featureGates``, ``volumePluginDir``) or a
  kubelet_config result (``config``, ``dropped``, ``path``);
- ``controller_manager`` / ``apiserver``: component_flags results for those components;
- ``unreachable`` / ``error``: why the node gave no (or partial) facts.

component_flags and kubelet_config leave out of ``flags`` / ``feature_gates`` what the version would
refuse and list it in ``dropped`` (name -> reason): a dropped entry is still in the file on the
node, so it is reported as refused. A failed result whose message is a refusal (``unrecognized
feature gate``, ``cannot set feature gate``, ``unknown flag``) is reported as such too.

Files: ``report_json`` and ``render_markdown`` give the two files' text; ``json_unchanged`` and
``markdown_unchanged`` tell whether an existing file differs from the new text by more than the
generation time (the top-level ``generated_at`` of the JSON, the ``Generated at:`` line of the
Markdown), so that re-running an audit on an unchanged fleet changes nothing.
"""

from __future__ import annotations

import datetime
import json
import posixpath

from ansible_collections.kubestorage.enablement.plugins.module_utils import feature_gates as fg

DEFAULT_PLUGIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
IN_TREE_PREFIX = "kubernetes.io/"
GENERATED_PREFIX = "Generated at: "
SEVERITIES = ("error", "warning", "info")
COMPONENT_KEYS = (("kubelet", "kubelet"), ("kube-controller-manager", "controller_manager"), ("kube-apiserver", "apiserver"))
MAP_FLAGS = ("feature-gates", "runtime-config")
REFUSALS = ("unrecognized feature gate", "cannot set feature gate", "unknown flag:")

# Every finding kind, with its severity (api_unreachable: info when the API was not queried,
# warning when querying it failed).
KINDS = {
    "node_unreachable": "error",
    "facts_incomplete": "warning",
    "driver_checksum_drift": "warning",
    "driver_missing": "warning",
    "driver_rejected": "error",
    "plugin_dir_problem": "warning",
    "plugin_dir_mismatch": "error",
    "plugin_dir_inconsistent": "warning",
    "gate_refused": "error",
    "gate_ga": "warning",
    "flag_removed": "error",
    "mount_not_shared": "error",
    "multiple_default_storageclasses": "error",
    "no_default_storageclass": "info",
    "storageclass_unknown_provisioner": "warning",
    "api_unreachable": "info",
}


class AuditError(Exception):
    """Input that is not shaped like the facts (``msg`` is the text to report)."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


def _finding(kind, host, subject, message, severity=None):
    return {"severity": severity or KINDS[kind], "kind": kind, "host": host, "subject": subject, "message": message}


def _skipped(result):
    return isinstance(result, dict) and bool(result.get("skipped"))


def _failed(result):
    return isinstance(result, dict) and bool(result.get("failed"))


def _usable(result):
    """The result when it holds facts (not None, skipped or failed), else None."""
    if isinstance(result, dict) and not _skipped(result) and not _failed(result):
        return result
    return None


def _norm_dir(path):
    return posixpath.normpath(path) if path else path


def _bool_text(value):
    return "true" if value is True else "false" if value is False else "?"


def _version(*candidates):
    """The first candidate that parses as a Kubernetes version, as given (without a leading v)."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            try:
                fg.parse_version(value)
            except fg.GateError:
                continue
            text = value.strip()
            return text[1:] if text[:1] in ("v", "V") else text
    return None


def _majority(by_value):
    """The value held by strictly more hosts than any other ({value: [hosts]}), else None."""
    ranked = sorted(by_value.items(), key=lambda item: (-len(item[1]), item[0]))
    if not ranked:
        return None
    if len(ranked) > 1 and len(ranked[1][1]) == len(ranked[0][1]):
        return None
    return ranked[0][0]


def _spread(by_value):
    """'/a on cp1, w1; /b on w2' (most hosts first)."""
    ranked = sorted(by_value.items(), key=lambda item: (-len(item[1]), item[0]))
    return "; ".join("%s on %s" % (value, ", ".join(sorted(hosts))) for value, hosts in ranked)


def _is_gate_name(name):
    return name in fg.GATES or name[:1].isupper()


# ---------------------------------------------------------------------------------------------
# Per node


def _flag_sources(results, component, label):
    """component_flags results -> [(source, flags, gates, dropped)] for the usable ones."""
    sources = []
    for index, result in enumerate(results):
        usable = _usable(result)
        if usable is None:
            continue
        source = usable.get("path") or "%s (%s #%d)" % (label, component, index + 1)
        flags = dict(usable.get("flags") or {})
        gates = usable.get("feature_gates")
        if gates is None:
            gates = flags.get("feature-gates") or {}
        sources.append({"source": source, "kind": "flags", "flags": flags, "gates": gates,
                        "dropped": dict(usable.get("dropped") or {}), "version": usable.get("kubernetes_version")})
    return sources


def _config_source(config, kubelet):
    """KubeletConfiguration (raw, or a kubelet_config result) -> a source dict, or None."""
    if not isinstance(config, dict) or _skipped(config) or _failed(config):
        return None
    body = config.get("config") if isinstance(config.get("config"), dict) else config
    files = (kubelet or {}).get("files") or {}
    source = config.get("path") or files.get("kubelet_config") or "KubeletConfiguration"
    return {"source": source, "kind": "config", "flags": {}, "gates": body.get("featureGates") or {},
            "dropped": dict(config.get("dropped") or {}) if body is not config else {},
            "version": config.get("kubernetes_version"), "plugin_dir": body.get("volumePluginDir")}


def _fix_gate(name, source_kind):
    if source_kind == "config":
        return "kubestorage.enablement.kubelet_config with feature_gates: {%s: null}" % name
    return "kubestorage.enablement.component_flags with feature_gates: {%s: null}" % name


def _refusal_text(status, name, gate):
    if status == "removed":
        return "the gate was removed in %s" % gate.removed
    if status == "not_yet":
        first = gate.alpha or gate.beta or gate.ga
        return "the gate only exists from %s" % first
    return "%s is GA and locked to true from %s" % (name, gate.locked or gate.ga)


def _check_gates(host, component, version, source, findings):
    """Gate findings for one source; returns the row's {name: {value, status, source}}."""
    row = {}
    where = source["source"]
    try:
        gates = fg.parse_gates(source["gates"])
    except fg.GateError as exc:
        findings.append(_finding("facts_incomplete", host, "%s feature gates" % component,
                                 "%s: the feature gates of %s in %s cannot be read: %s. Fix: correct the entry, then re-run the audit."
                                 % (host, component, where, exc.msg)))
        gates = {}
    for name in sorted(gates):
        value = gates[name]
        status = "unchecked"
        if version:
            verdict = fg.check_gate(name, value, version, component)
            status = verdict.status
            gate = fg.GATES.get(name)
            if status in ("removed", "not_yet", "locked"):
                fix = "remove %s from the feature gates%s" % (name, " or set it to true" if status == "locked" else "")
                findings.append(_finding(
                    "gate_refused", host, "%s feature gate %s" % (component, name),
                    "%s: feature gate %s=%s set for %s in %s is refused by %s %s: %s; %s would refuse to start with '%s'. "
                    "Fix: %s in %s (%s)." % (host, name, _bool_text(value), component, where, component, version,
                                             _refusal_text(status, name, gate), component, verdict.message, fix, where,
                                             _fix_gate(name, source["kind"]))))
            elif status == "ga":
                if gate.removed:
                    later = "the gate is removed in %s, where %s would refuse to start" % (gate.removed, component)
                    when = "before upgrading to %s" % gate.removed
                else:
                    later = "it will be removed in a future release"
                    when = "before it is removed"
                findings.append(_finding(
                    "gate_ga", host, "%s feature gate %s" % (component, name),
                    "%s: feature gate %s=%s set for %s %s in %s is GA since %s and %s logs '%s'; %s. Fix: remove %s from the "
                    "feature gates in %s %s (%s)." % (host, name, _bool_text(value), component, version, where, gate.ga,
                                                      component, verdict.message, later, name, where, when,
                                                      _fix_gate(name, source["kind"]))))
        row[name] = {"value": value, "status": status, "source": where}
    for name in sorted(source["dropped"]):
        if not _is_gate_name(name):
            continue
        reason = str(source["dropped"][name])
        status = "removed" if reason.startswith("removed") else "not_yet" if reason.startswith("not known") else "refused"
        findings.append(_finding(
            "gate_refused", host, "%s feature gate %s" % (component, name),
            "%s: feature gate %s set for %s in %s is refused by %s %s: %s. Fix: remove %s from the feature gates in %s (%s)."
            % (host, name, component, where, component, version or "(version unknown)", reason, name, where,
               _fix_gate(name, source["kind"]))))
        # filter_gates only drops a removed gate when it is true (false is an error instead).
        row[name] = {"value": True if status == "removed" else None, "status": status, "source": where}
    return row


def _check_flags(host, component, version, source, findings):
    where = source["source"]
    for name in sorted(source["flags"]):
        if name in MAP_FLAGS or not version:
            continue
        try:
            verdict = fg.check_flag(component, name, version)
        except fg.GateError:
            continue
        if verdict.status == "removed":
            removed = fg.FLAGS[(component, name.lstrip("-"))].removed
            findings.append(_finding(
                "flag_removed", host, "%s --%s" % (component, name.lstrip("-")),
                "%s: --%s set for %s in %s was removed in %s; %s %s would refuse to start with '%s'. Fix: remove --%s from %s "
                "(kubestorage.enablement.component_flags with flags: {%s: null})."
                % (host, name.lstrip("-"), component, where, removed, component, version, verdict.message,
                   name.lstrip("-"), where, name.lstrip("-"))))
    for name in sorted(source["dropped"]):
        if _is_gate_name(name):
            continue
        flag = name.lstrip("-")
        findings.append(_finding(
            "flag_removed", host, "%s --%s" % (component, flag),
            "%s: --%s set for %s in %s is refused by %s %s: %s. Fix: remove --%s from %s "
            "(kubestorage.enablement.component_flags with flags: {%s: null})."
            % (host, flag, component, where, component, version or "(version unknown)", source["dropped"][name], flag,
               where, flag)))


def _failed_source(host, what, result, findings):
    """A failed fact task: a refusal when its message says so, else incomplete facts."""
    msg = str(result.get("msg") or "no message").strip()
    where = result.get("path") or "the settings file"
    if any(text in msg for text in REFUSALS):
        kind = "flag_removed" if "unknown flag:" in msg and "feature gate" not in msg else "gate_refused"
        findings.append(_finding(kind, host, what,
                                 "%s: reading %s failed because the component's version refuses what %s sets: %s "
                                 "Fix: remove the refused entries from %s, then re-run the audit." % (host, what, where, msg, where)))
    else:
        findings.append(_finding("facts_incomplete", host, what,
                                 "%s: reading %s failed: %s. Fix: correct the cause, then re-run the audit; until then the report "
                                 "has no %s for %s." % (host, what, msg.rstrip("."), what, host)))


def _driver_row(driver):
    loads = driver.get("loads")
    init = driver.get("init") if isinstance(driver.get("init"), dict) else {}
    return {"sha256": driver.get("checksum"), "version": driver.get("version") or init.get("version"),
            "probe": "ok" if loads is True else "failed" if loads is False else "not_probed",
            "probe_error": driver.get("probe_error"), "path": driver.get("path")}


def _flex_findings(host, flex, findings):
    drivers = {}
    rejected_paths = set()
    for driver in sorted(flex.get("drivers") or [], key=lambda item: str(item.get("name"))):
        name = driver.get("name")
        if not name:
            continue
        drivers[name] = _driver_row(driver)
        if driver.get("loads") is False:
            rejected_paths.add(driver.get("path"))
            findings.append(_finding(
                "driver_rejected", host, "flexvolume driver %s" % name,
                "%s: kubelet would fail to load FlexVolume driver %s (%s): %s. Fix: repair or reinstall the driver on %s "
                "(kubestorage.enablement.flexvolume_driver verifies init before putting it in place) and check its "
                "dependencies." % (host, name, driver.get("path"), driver.get("probe_error") or "init failed", host)))
    for problem in sorted(flex.get("problems") or [], key=lambda item: (str(item.get("path")), str(item.get("problem")))):
        path, text = problem.get("path"), str(problem.get("problem"))
        if path in rejected_paths:
            continue
        if "kubelet would reject" in text or "kubelet fails to load" in text or "kubelet would fail to load" in text:
            findings.append(_finding("driver_rejected", host, "flexvolume %s" % path,
                                     "%s: %s: %s. Fix: reinstall the driver on %s with kubestorage.enablement.flexvolume_driver "
                                     "or remove the broken entry." % (host, path, text, host)))
        else:
            findings.append(_finding("plugin_dir_problem", host, "flexvolume %s" % path,
                                     "%s: %s: %s." % (host, path, text[:1].upper() + text[1:] if text else text)))
    return drivers


def _mount_findings(host, kubelet, findings):
    for target in sorted(kubelet.get("propagation") or {}):
        value = kubelet["propagation"][target]
        if value and value != "shared":
            findings.append(_finding(
                "mount_not_shared", host, "mount %s" % target,
                "%s: %s has mount propagation %s, not shared: pods with mountPropagation Bidirectional (CSI node plugins) "
                "fail with 'is not a shared mount'. Fix: run 'mount --make-rshared /' on %s and find what makes it %s at boot "
                "(a unit or fstab option); check with 'findmnt -o TARGET,PROPAGATION %s'." % (host, target, value, host, value, target)))
    rows = []
    for runtime in sorted(kubelet.get("runtimes") or [], key=lambda item: str(item.get("name"))):
        name = runtime.get("name")
        flags = runtime.get("mount_flags")
        propagation = runtime.get("propagation")
        rows.append({"name": name, "active": runtime.get("active"), "mount_flags": flags, "propagation": propagation,
                     "unit_file": runtime.get("unit_file")})
        problems = []
        if flags and flags != "shared":
            problems.append("its unit sets MountFlags=%s" % flags)
        if runtime.get("active") and propagation and propagation != "shared":
            problems.append("it runs with mount propagation %s" % propagation)
        if not problems:
            continue
        findings.append(_finding(
            "mount_not_shared", host, "runtime %s" % name,
            "%s: container runtime %s (%s): %s, so containers with mountPropagation Bidirectional fail with 'is not a shared "
            "mount'. Fix: a systemd drop-in for %s.service with MountFlags=shared (or remove MountFlags=%s), then "
            "'systemctl daemon-reload' and a restart of %s, one node at a time."
            % (host, name, runtime.get("unit_file"), " and ".join(problems), name, flags or "slave", name)))
    return rows


def _kubelet_plugin_dir(flag_sources, config_source, have_facts):
    """kubelet's effective plugin dir: (dir, origin, where); a later flag wins over an earlier one."""
    found = None
    for source in flag_sources:
        value = source["flags"].get("volume-plugin-dir")
        if value:
            found = (value, "flag", source["source"])
    if found:
        return found
    if config_source and config_source.get("plugin_dir"):
        return config_source["plugin_dir"], "config", config_source["source"]
    if have_facts:
        return DEFAULT_PLUGIN_DIR, "default", None
    return None, "unknown", None


def _node(host, entry, findings):
    if not isinstance(entry, dict):
        raise AuditError("nodes.%s: expected a mapping of facts, got %s" % (host, type(entry).__name__))
    groups = sorted(str(group) for group in entry.get("groups") or [])
    row = {"host": host, "groups": groups, "reachable": True, "error": entry.get("error") or None,
           "kubernetes_version": None, "layout": None, "control_plane": False,
           "kubelet_plugin_dir": None, "kubelet_plugin_dir_origin": "unknown", "kubelet_plugin_dir_source": None,
           "controller_manager_plugin_dir": None, "controller_manager_plugin_dir_source": None,
           "flexvolume_dir_scanned": None, "versions": {}, "gates": {}, "runtimes": [], "propagation": {},
           "kubelet_active": None, "unread_files": [], "drivers": None}
    if entry.get("unreachable"):
        reason = entry["unreachable"] if isinstance(entry["unreachable"], str) else "unreachable"
        row["reachable"] = False
        row["error"] = reason
        findings.append(_finding("node_unreachable", host, "node %s" % host,
                                 "%s: the node was unreachable (%s), so nothing on it was audited. Fix: restore SSH access to %s "
                                 "(or remove it from the inventory), then re-run the audit." % (host, str(reason).rstrip("."), host)))
        return row
    if entry.get("error"):
        findings.append(_finding("facts_incomplete", host, "node %s" % host,
                                 "%s: gathering facts failed (%s); the report may miss data for %s. Fix: correct the cause, then "
                                 "re-run the audit." % (host, str(entry["error"]).rstrip("."), host)))

    raw_kubelet = entry.get("kubelet")
    kubelet = _usable(raw_kubelet)
    if _failed(raw_kubelet):
        _failed_source(host, "kubelet facts (kubelet_info)", raw_kubelet, findings)
    flag_results = entry.get("kubelet_flags") or []
    if isinstance(flag_results, dict):
        flag_results = [flag_results]
    for result in flag_results:
        if _failed(result):
            _failed_source(host, "kubelet flags", result, findings)
    kubelet_sources = _flag_sources(flag_results, "kubelet", "kubelet flags")
    raw_config = entry.get("kubelet_config")
    if _failed(raw_config):
        _failed_source(host, "kubelet KubeletConfiguration", raw_config, findings)
    config_source = _config_source(raw_config, kubelet)

    kubelet_version = _version((kubelet or {}).get("kubernetes_version"),
                               *[source["version"] for source in kubelet_sources],
                               (config_source or {}).get("version"))
    row["kubernetes_version"] = kubelet_version
    row["versions"]["kubelet"] = kubelet_version
    if kubelet:
        row["layout"] = kubelet.get("layout")
        row["propagation"] = dict(sorted((kubelet.get("propagation") or {}).items()))
        state = kubelet.get("kubelet") or {}
        row["kubelet_active"] = state.get("active")
        row["unread_files"] = sorted(state.get("unread_files") or [])
        row["runtimes"] = _mount_findings(host, kubelet, findings)

    have_kubelet_facts = bool(kubelet or kubelet_sources or config_source)
    plugin_dir, origin, where = _kubelet_plugin_dir(kubelet_sources, config_source, have_kubelet_facts)
    row.update(kubelet_plugin_dir=plugin_dir, kubelet_plugin_dir_origin=origin, kubelet_plugin_dir_source=where)

    kubelet_gates = {}
    for source in ([config_source] if config_source else []) + kubelet_sources:
        kubelet_gates.update(_check_gates(host, "kubelet", kubelet_version, source, findings))
        _check_flags(host, "kubelet", kubelet_version, source, findings)
    row["gates"]["kubelet"] = kubelet_gates

    for component, key in COMPONENT_KEYS[1:]:
        raw = entry.get(key)
        if raw is None or _skipped(raw):
            continue
        row["control_plane"] = True
        if _failed(raw):
            _failed_source(host, "%s flags" % component, raw, findings)
            continue
        sources = _flag_sources([raw], component, "%s flags" % component)
        source = sources[0]
        version = _version(source["version"], kubelet_version)
        row["versions"][component] = version
        row["gates"][component] = _check_gates(host, component, version, source, findings)
        _check_flags(host, component, version, source, findings)
        if component == "kube-controller-manager":
            value = source["flags"].get("flex-volume-plugin-dir")
            row["controller_manager_plugin_dir"] = value or DEFAULT_PLUGIN_DIR
            row["controller_manager_plugin_dir_source"] = source["source"] if value else "default"

    raw_flex = entry.get("flexvolume")
    flex = _usable(raw_flex)
    if _failed(raw_flex):
        _failed_source(host, "FlexVolume drivers (flexvolume_driver_info)", raw_flex, findings)
    if flex is not None:
        row["flexvolume_dir_scanned"] = flex.get("plugin_dir")
        row["drivers"] = _flex_findings(host, flex, findings)
    return row


# ---------------------------------------------------------------------------------------------
# Fleet


def _driver_table(rows):
    """{driver: {checksums: {sha: [hosts]}, majority, nodes, missing_on, probe: {host: status}}}."""
    audited = [host for host, row in rows.items() if row["drivers"] is not None]
    table = {}
    for host in audited:
        for name, info in rows[host]["drivers"].items():
            entry = table.setdefault(name, {"checksums": {}, "probe": {}, "versions": {}})
            entry["checksums"].setdefault(info["sha256"] or "(unknown)", []).append(host)
            entry["probe"][host] = info["probe"]
            if info["version"]:
                entry["versions"][host] = info["version"]
    result = {}
    for name in sorted(table):
        entry = table[name]
        checksums = {sha: sorted(hosts) for sha, hosts in sorted(entry["checksums"].items())}
        nodes = sorted(host for hosts in checksums.values() for host in hosts)
        result[name] = {"checksums": checksums, "majority": _majority(checksums), "nodes": nodes,
                        "missing_on": sorted(host for host in audited if host not in nodes),
                        "probe": dict(sorted(entry["probe"].items())), "versions": dict(sorted(entry["versions"].items()))}
    return result


def _driver_findings(rows, drivers, findings):
    for name, entry in drivers.items():
        checksums = entry["checksums"]
        if len(checksums) < 2:
            continue
        majority = entry["majority"]
        spread = "; ".join("%s on %s" % (sha[:12], ", ".join(hosts))
                           for sha, hosts in sorted(checksums.items(), key=lambda item: (-len(item[1]), item[0])))
        if majority:
            others = sorted(host for sha, hosts in checksums.items() if sha != majority for host in hosts)
            head = "the majority (%s) has sha256 %s" % (", ".join(checksums[majority]), majority)
            fix = "reinstall %s on %s from the same source as the majority (kubestorage.enablement.flexvolume_driver), or roll " \
                  "the new version out to every node" % (name, ", ".join(others))
        else:
            head = "no checksum is on a majority of nodes"
            fix = "decide which version is right and install it on every node with kubestorage.enablement.flexvolume_driver"
        findings.append(_finding(
            "driver_checksum_drift", None, "flexvolume driver %s" % name,
            "FlexVolume driver %s differs between nodes (sha256 %s); %s. Fix: %s." % (name, spread, head, fix)))
    missing = {}
    groups = {}
    for host, row in rows.items():
        if row["drivers"] is None:
            continue
        for group in row["groups"]:
            groups.setdefault(group, []).append(host)
    for group in sorted(groups):
        members = sorted(groups[group])
        present = {}
        for host in members:
            for name in rows[host]["drivers"]:
                present.setdefault(name, []).append(host)
        for name in sorted(present):
            have = present[name]
            for host in members:
                if host not in have:
                    missing.setdefault((host, name), {"groups": [], "have": set()})
                    missing[(host, name)]["groups"].append(group)
                    missing[(host, name)]["have"].update(have)
    for host, name in sorted(missing):
        info = missing[(host, name)]
        findings.append(_finding(
            "driver_missing", host, "flexvolume driver %s" % name,
            "%s: FlexVolume driver %s is missing, while other nodes of group %s have it (%s): pods using it cannot mount "
            "volumes on %s. Fix: install %s on %s with kubestorage.enablement.flexvolume_driver (or remove it from the other "
            "nodes if it is no longer used)."
            % (host, name, ", ".join(info["groups"]), ", ".join(sorted(info["have"])), host, name, host)))


def _plugin_dir_findings(rows, findings):
    by_dir = {}
    for host, row in rows.items():
        if row["reachable"] and row["kubelet_plugin_dir"]:
            by_dir.setdefault(_norm_dir(row["kubelet_plugin_dir"]), []).append(host)
    majority = _majority(by_dir)
    if len(by_dir) > 1:
        findings.append(_finding(
            "plugin_dir_inconsistent", None, "kubelet --volume-plugin-dir",
            "kubelet FlexVolume plugin dirs differ between nodes (%s): drivers installed to one dir are not seen on the other "
            "nodes, and kube-controller-manager can only use one dir. Fix: set the same --volume-plugin-dir (or "
            "volumePluginDir) on every node (%s), restart kubelet one node at a time and reinstall the drivers there."
            % (_spread(by_dir), "the majority uses %s" % majority if majority else "choose one")))
    for host, row in rows.items():
        kcm_dir = row["controller_manager_plugin_dir"]
        if not kcm_dir:
            continue
        others = {value: hosts for value, hosts in by_dir.items() if value != _norm_dir(kcm_dir)}
        if not others:
            continue
        advice = majority or sorted(others)[0]
        findings.append(_finding(
            "plugin_dir_mismatch", host, "kube-controller-manager --flex-volume-plugin-dir",
            "%s: kube-controller-manager --flex-volume-plugin-dir is %s (%s) but kubelet uses %s: the controller-manager "
            "does not find the FlexVolume drivers those kubelets load, so attach/detach of their volumes fails. Fix: set "
            "--flex-volume-plugin-dir=%s on %s with kubestorage.enablement.component_flags (it moves kubeadm's flexvolume-dir "
            "volume too), or set every kubelet's --volume-plugin-dir to %s."
            % (host, kcm_dir, row["controller_manager_plugin_dir_source"], _spread(others), advice, host, kcm_dir)))


def _meta(obj):
    return obj.get("metadata") or {} if isinstance(obj, dict) else {}


def _is_default_class(storage_class):
    annotations = _meta(storage_class).get("annotations") or {}
    return any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def _api(api, findings):
    if api is None:
        findings.append(_finding("api_unreachable", None, "Kubernetes API",
                                 "The Kubernetes API was not queried, so CSIDrivers and StorageClasses were not audited. Fix: run "
                                 "the audit with access to the API (a kubeconfig on the controller) to include them.",
                                 severity="info"))
        return {"queried": False, "error": None, "csidrivers": [], "storageclasses": [], "default_storageclasses": []}
    if not isinstance(api, dict):
        raise AuditError("api: expected a mapping with csidrivers, storageclasses and error, got %s" % type(api).__name__)
    drivers = []
    for obj in api.get("csidrivers") or []:
        spec = obj.get("spec") or {}
        drivers.append({"name": _meta(obj).get("name"), "attach_required": spec.get("attachRequired", True),
                        "pod_info_on_mount": spec.get("podInfoOnMount", False), "fs_group_policy": spec.get("fsGroupPolicy"),
                        "volume_lifecycle_modes": sorted(spec.get("volumeLifecycleModes") or [])})
    drivers.sort(key=lambda item: str(item["name"]))
    driver_names = {item["name"] for item in drivers}
    classes = []
    for obj in api.get("storageclasses") or []:
        provisioner = obj.get("provisioner")
        classes.append({"name": _meta(obj).get("name"), "provisioner": provisioner, "default": _is_default_class(obj),
                        "reclaim_policy": obj.get("reclaimPolicy", "Delete"),
                        "volume_binding_mode": obj.get("volumeBindingMode", "Immediate"),
                        "allow_volume_expansion": bool(obj.get("allowVolumeExpansion")),
                        "known_provisioner": bool(provisioner) and (provisioner in driver_names or provisioner.startswith(IN_TREE_PREFIX))})
    classes.sort(key=lambda item: str(item["name"]))
    defaults = [item["name"] for item in classes if item["default"]]
    summary = {"queried": True, "error": api.get("error") or None, "csidrivers": drivers, "storageclasses": classes,
               "default_storageclasses": defaults}
    if api.get("error"):
        findings.append(_finding("api_unreachable", None, "Kubernetes API",
                                 "Querying the Kubernetes API failed (%s), so CSIDrivers and StorageClasses were not audited. Fix: "
                                 "check the kubeconfig, the API server and the credentials' RBAC (list csidrivers and "
                                 "storageclasses), then re-run the audit." % str(api["error"]).rstrip("."), severity="warning"))
        return summary
    if len(defaults) > 1:
        findings.append(_finding(
            "multiple_default_storageclasses", None, "default StorageClass",
            "StorageClasses %s are all marked default (%s: \"true\"): a PVC without storageClassName gets whichever the "
            "release picks (older releases reject it). Fix: keep one default and remove the annotation from the others, "
            "e.g. kubectl annotate storageclass %s %s-." % (", ".join(defaults), " or ".join(DEFAULT_CLASS_ANNOTATIONS),
                                                            defaults[1], DEFAULT_CLASS_ANNOTATIONS[0])))
    elif not defaults:
        findings.append(_finding(
            "no_default_storageclass", None, "default StorageClass",
            "No StorageClass is marked default: a PVC without storageClassName stays unbound until one is. Fix: if PVCs should "
            "get a class by default, annotate one class with %s=\"true\"." % DEFAULT_CLASS_ANNOTATIONS[0]))
    for item in classes:
        if item["known_provisioner"]:
            continue
        findings.append(_finding(
            "storageclass_unknown_provisioner", None, "StorageClass %s" % item["name"],
            "StorageClass %s uses provisioner %s, which is neither a CSIDriver in the cluster (%s) nor an in-tree %s* "
            "provisioner: its PVCs stay Pending unless an external provisioner without a CSIDriver object serves it. Fix: "
            "install the CSI driver %s (with its CSIDriver object), or recreate the class with an installed provisioner "
            "(provisioner is immutable)." % (item["name"], item["provisioner"], ", ".join(sorted(driver_names)) or "none",
                                             IN_TREE_PREFIX, item["provisioner"])))
    return summary


def _sort_key(finding):
    return (SEVERITIES.index(finding["severity"]), finding["kind"], finding["host"] or "", finding["subject"], finding["message"])


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(nodes, api=None, generated_at=None):
    """The fleet report (a JSON-serializable dict) from the facts of every node and from the API.

    ``generated_at`` defaults to the current UTC time; everything else depends only on the input.
    """
    if not isinstance(nodes, dict):
        raise AuditError("nodes: expected a mapping of host name to facts, got %s" % type(nodes).__name__)
    findings = []
    rows = {}
    for host in sorted(nodes, key=str):
        rows[str(host)] = _node(str(host), nodes[host], findings)
    drivers = _driver_table(rows)
    _driver_findings(rows, drivers, findings)
    _plugin_dir_findings(rows, findings)
    api_summary = _api(api, findings)
    findings.sort(key=_sort_key)
    by_severity = {severity: 0 for severity in SEVERITIES}
    by_kind = {kind: 0 for kind in KINDS}
    for finding in findings:
        by_severity[finding["severity"]] += 1
        by_kind[finding["kind"]] += 1
    summary = {"findings": len(findings), "by_severity": by_severity, "by_kind": by_kind, "nodes": len(rows),
               "nodes_unreachable": sum(1 for row in rows.values() if not row["reachable"]), "drivers": len(drivers)}
    return {"generated_at": generated_at or utc_now(), "summary": summary, "nodes": rows, "drivers": drivers,
            "api": api_summary, "findings": findings}


def at_least(report, severity):
    """The findings of ``severity`` or worse (error < warning < info)."""
    limit = SEVERITIES.index(severity)
    return [finding for finding in report["findings"] if SEVERITIES.index(finding["severity"]) <= limit]


# ---------------------------------------------------------------------------------------------
# Files


def report_json(report):
    """The JSON file's text (sorted keys, so the same report gives the same text)."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def json_unchanged(old_text, new_text):
    """Whether the JSON file ``old_text`` equals ``new_text`` apart from the top-level ``generated_at``.
    A file that is missing, not JSON or not written by report_json counts as changed."""
    if old_text is None:
        return False
    try:
        old = json.loads(old_text)
        new = json.loads(new_text)
    except ValueError:
        return False
    if not isinstance(old, dict) or not isinstance(new, dict) or report_json(old) != old_text:
        return False
    old.pop("generated_at", None)
    new.pop("generated_at", None)
    return report_json(old) == report_json(new)


def _mask_generated(text):
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith(GENERATED_PREFIX):
            lines[index] = GENERATED_PREFIX
            break
    return "\n".join(lines)


def markdown_unchanged(old_text, new_text):
    """Whether the Markdown file ``old_text`` equals ``new_text`` apart from its ``Generated at:`` line."""
    if old_text is None:
        return False
    return _mask_generated(old_text) == _mask_generated(new_text)


def plan_files(report, old_json, old_markdown):
    """What to write: {json: {text, changed}, markdown: {text, changed}} given the files' current text
    (None when missing). A file is changed only when it differs by more than the generation time."""
    new_json = report_json(report)
    new_markdown = render_markdown(report)
    return {"json": {"text": new_json, "changed": not json_unchanged(old_json, new_json)},
            "markdown": {"text": new_markdown, "changed": not markdown_unchanged(old_markdown, new_markdown)}}


# ---------------------------------------------------------------------------------------------
# Markdown


def _cell(value):
    if value is None or value == "":
        return "-"
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for header in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
    return lines


def _gate_text(name, info):
    text = "%s=%s" % (name, _bool_text(info["value"]))
    if info["status"] in ("ga", "removed", "not_yet", "locked", "refused"):
        text += " (%s)" % info["status"]
    return text


def _gates_text(gates):
    parts = []
    for component in sorted(gates):
        if gates[component]:
            parts.append("%s: %s" % (component, ", ".join(_gate_text(name, info) for name, info in sorted(gates[component].items()))))
    return "; ".join(parts)


def _drivers_text(drivers):
    if drivers is None:
        return "(not audited)"
    return ", ".join("%s %s %s" % (name, (info["sha256"] or "?")[:12], info["probe"]) for name, info in sorted(drivers.items()))


def _runtimes_text(runtimes):
    return ", ".join("%s (%s, MountFlags=%s, propagation %s)" % (
        item["name"], "active" if item["active"] else "inactive" if item["active"] is False else "state unknown",
        item["mount_flags"] or "unset", item["propagation"] or "unknown") for item in runtimes)


def render_markdown(report):
    """The report as Markdown. The same report gives the same text."""
    summary = report["summary"]
    lines = ["# Storage audit report", "", GENERATED_PREFIX + str(report.get("generated_at")), "", "## Summary", ""]
    lines += _table(["Severity", "Findings"], [(severity, summary["by_severity"][severity]) for severity in SEVERITIES])
    lines += ["", "Nodes: %d (%d unreachable). FlexVolume drivers: %d." % (summary["nodes"], summary["nodes_unreachable"], summary["drivers"]), ""]
    kinds = [(kind, KINDS[kind], count) for kind, count in summary["by_kind"].items() if count]
    if kinds:
        lines += _table(["Finding kind", "Severity", "Count"], kinds)
        lines.append("")
    lines += ["## Findings", ""]
    if not report["findings"]:
        lines += ["No findings.", ""]
    for severity in SEVERITIES:
        items = [finding for finding in report["findings"] if finding["severity"] == severity]
        if not items:
            continue
        lines += ["### %s (%d)" % ({"error": "Errors", "warning": "Warnings", "info": "Info"}[severity], len(items)), ""]
        lines += _table(["Host", "Kind", "Subject", "Message"],
                        [(finding["host"] or "(fleet)", finding["kind"], finding["subject"], finding["message"]) for finding in items])
        lines.append("")
    lines += ["## Nodes", ""]
    node_rows = []
    for host, row in sorted(report["nodes"].items()):
        if not row["reachable"]:
            node_rows.append((host, ", ".join(row["groups"]), "unreachable", None, None, None, None, None, None, None))
            continue
        node_rows.append((host, ", ".join(row["groups"]), row["kubernetes_version"], row["layout"],
                          "%s (%s)" % (row["kubelet_plugin_dir"], row["kubelet_plugin_dir_origin"]) if row["kubelet_plugin_dir"] else None,
                          row["controller_manager_plugin_dir"], _drivers_text(row["drivers"]),
                          ", ".join("%s=%s" % (target, value) for target, value in sorted(row["propagation"].items())),
                          _runtimes_text(row["runtimes"]), _gates_text(row["gates"])))
    lines += _table(["Host", "Groups", "Version", "Layout", "kubelet plugin dir", "controller-manager flex dir", "Drivers",
                     "Propagation", "Runtimes", "Feature gates"], node_rows)
    lines += ["", "## FlexVolume drivers", ""]
    if report["drivers"]:
        driver_rows = []
        for name, entry in sorted(report["drivers"].items()):
            for sha, hosts in sorted(entry["checksums"].items(), key=lambda item: (-len(item[1]), item[0])):
                driver_rows.append((name, sha, ", ".join(hosts), "yes" if sha == entry["majority"] else "no",
                                    ", ".join(entry["missing_on"])))
        lines += _table(["Driver", "sha256", "Nodes", "Majority", "Missing on"], driver_rows)
    else:
        lines.append("No FlexVolume drivers found.")
    lines += ["", "## Kubernetes API", ""]
    api = report["api"]
    if not api["queried"]:
        lines.append("Not queried.")
    elif api["error"]:
        lines.append("Query failed: %s" % _cell(api["error"]))
    else:
        lines += ["Default StorageClass: %s" % (", ".join(api["default_storageclasses"]) or "none"), "", "### CSIDrivers", ""]
        lines += _table(["Name", "attachRequired", "podInfoOnMount", "fsGroupPolicy", "volumeLifecycleModes"],
                        [(item["name"], _bool_text(item["attach_required"]), _bool_text(item["pod_info_on_mount"]),
                          item["fs_group_policy"], ", ".join(item["volume_lifecycle_modes"])) for item in api["csidrivers"]])
        lines += ["", "### StorageClasses", ""]
        lines += _table(["Name", "Provisioner", "Default", "reclaimPolicy", "volumeBindingMode", "allowVolumeExpansion", "Provisioner known"],
                        [(item["name"], item["provisioner"], "yes" if item["default"] else "no", item["reclaim_policy"],
                          item["volume_binding_mode"], _bool_text(item["allow_volume_expansion"]),
                          "yes" if item["known_provisioner"] else "no") for item in api["storageclasses"]])
    lines.append("")
    return "\n".join(lines)
