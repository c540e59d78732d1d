# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan a change of a component's flags and feature gates in one file, version-aware.

Combines flag_files (where flags live and how to edit them without losing anything else)
with feature_gates (what each Kubernetes version accepts). Pure functions over text: the
modules read the file, call plan_*(), and write the result.
"""

from __future__ import annotations

import re

from ansible_collections.kubestorage.enablement.plugins.module_utils import feature_gates as fg
from ansible_collections.kubestorage.enablement.plugins.module_utils import flag_files as ff

COMPONENTS = ("kubelet", "kube-controller-manager", "kube-apiserver", "kube-scheduler")

BACKENDS = {
    "env_file": (ff.env_file_read, ff.env_file_update),
    "systemd_dropin": (ff.dropin_read, ff.dropin_update),
    "static_pod": (ff.static_pod_read, ff.static_pod_update),
    "config_list": (ff.config_list_read, ff.config_list_update),
}

# Flags that name a host directory the component must see: in a static pod it needs a
# hostPath volume and mount (kubeadm calls the controller-manager's one flexvolume-dir).
HOST_DIR_FLAGS = {
    ("kube-controller-manager", "flex-volume-plugin-dir"): "flexvolume-dir",
}

# Comma-separated key=true/false maps, merged entry by entry (flag_files.merge_feature_gates).
MAP_FLAGS = ("feature-gates", "runtime-config")


class SettingsError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


def _refused(errors):
    return "; ".join(e.rstrip(".") for e in errors) + ". Nothing was changed."


def flag_value(value):
    """A flag value as the component's command line spells it (booleans lower-case)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def image_version(manifest_text, container=None):
    """The Kubernetes version in a static pod's image tag (registry/kube-x:v1.25.3 -> 1.25.3), or None."""
    images = re.findall(r"^\s*image:\s*['\"]?([^'\"\s]+)", manifest_text or "", re.M)
    for image in images:
        repo, sep, tag = image.rpartition(":")
        if container and not repo.endswith("/" + container) and repo != container:
            continue
        if sep and re.match(r"^v?\d+\.\d+", tag):
            return "%d.%d.%d" % fg.parse_version(tag)
    return None


def plan_flags(component, backend, text, selector, path, flags=None, feature_gates=None, runtime_config=None,
               version=None, policy="drop_obsolete", mount_host_dirs=True):
    """Compute the new text of one file holding a component's flags.

    selector: the env variable (env_file, systemd_dropin), the container (static_pod) or the key
    (config_list). flags: name -> value (None removes). feature_gates / runtime_config: merged
    into --feature-gates / --runtime-config entry by entry.
    Returns dict(text, flags, feature_gates, warnings, dropped). Raises SettingsError or
    ff.FlagFileError, before anything is written, for anything the component would refuse.
    """
    if component not in COMPONENTS:
        raise SettingsError("component %r: use one of %s" % (component, ", ".join(COMPONENTS)))
    if backend not in BACKENDS:
        raise SettingsError("backend %r: use one of %s" % (backend, ", ".join(sorted(BACKENDS))))
    read, update = BACKENDS[backend]
    current = {n: v for n, v in read(text, selector, path) if n}

    changes = {}
    for name, value in (flags or {}).items():
        norm = ff.normalize_flag_name(name)
        if norm in MAP_FLAGS:
            raise SettingsError("flags: give %s through the %s parameter, which merges entries instead of "
                                "replacing the whole list" % (norm, norm.replace("-", "_")))
        changes[norm] = flag_value(value)

    warnings, dropped = [], {}
    gate_changes = dict(feature_gates or {})
    existing_gates = fg.parse_gates(current.get("feature-gates") or "")
    merged_gates = dict(existing_gates)
    for gate, value in gate_changes.items():
        if value is None:
            merged_gates.pop(gate, None)
        else:
            merged_gates[gate] = bool(value)
    if version is not None:
        decision = fg.filter_gates(merged_gates, version, component=component, policy=policy)
        if decision.errors:
            raise SettingsError(_refused(decision.errors))
        warnings.extend(decision.warnings)
        dropped.update(decision.dropped)
        safe_gates = decision.gates
    else:
        safe_gates = merged_gates
    new_gates = {}
    for gate in set(existing_gates) | set(gate_changes):
        want = safe_gates.get(gate)  # None: removed by request or dropped as obsolete
        if want != existing_gates.get(gate):
            new_gates[gate] = want
    # Both maps are key=true/false lists: merged entry by entry, untouched entries kept as written.
    if new_gates:
        changes["feature-gates"] = ff.merge_feature_gates(current.get("feature-gates"), new_gates, path)
    if runtime_config:
        changes["runtime-config"] = ff.merge_feature_gates(current.get("runtime-config"), runtime_config, path)

    if version is not None:
        merged_flags = {n: v for n, v in current.items() if n not in MAP_FLAGS}
        merged_flags.update({n: v for n, v in changes.items() if n not in MAP_FLAGS})
        decision = fg.filter_flags(component, merged_flags, version, policy=policy)
        if decision.errors:
            raise SettingsError(_refused(decision.errors))
        warnings.extend(decision.warnings)
        for name, reason in decision.dropped.items():
            dropped[name] = reason
            if name in current:
                changes[name] = None
            else:
                changes.pop(name, None)

    if backend == "static_pod":
        mounts = []
        if mount_host_dirs:
            for name, value in changes.items():
                volume = HOST_DIR_FLAGS.get((component, name))
                if volume and value:
                    mounts.append({"name": volume, "path": value, "type": "DirectoryOrCreate"})
        new_text = update(text, selector, changes, path, host_path_mounts=mounts or None)
    else:
        new_text = update(text, selector, changes, path)
    result_flags = {n: v for n, v in read(new_text, selector, path) if n}
    return {
        "text": new_text,
        "flags": result_flags,
        "feature_gates": fg.parse_gates(result_flags.get("feature-gates") or ""),
        "warnings": warnings,
        "dropped": dropped,
    }


# KubeletConfiguration fields that older kubelets do not know; v1beta1 decoding ignores unknown
# fields, so writing one there would silently do nothing.
CONFIG_FIELD_SINCE = {
    "volumePluginDir": (1, 19),
}


def plan_kubelet_config(text, path, settings=None, feature_gates=None, version=None, policy="drop_obsolete"):
    """Compute the new text of a KubeletConfiguration file.

    settings: top-level fields to set (None removes). feature_gates: merged into featureGates.
    Returns dict(text, config, feature_gates, warnings, dropped, notes).
    """
    current = ff.kubelet_config_read(text, path)
    settings = dict(settings or {})
    if "featureGates" in settings:
        raise SettingsError("settings: give featureGates through the feature_gates parameter, which merges gates "
                            "instead of replacing the map")
    warnings, dropped = [], {}
    if version is not None:
        parsed = fg.parse_version(version)
        for field, since in CONFIG_FIELD_SINCE.items():
            if settings.get(field) is not None and parsed[:2] < since:
                raise SettingsError("%s: kubelet %d.%d ignores the KubeletConfiguration field %s (it exists since "
                                    "%d.%d); set the flag --%s with component_flags instead. Nothing was changed."
                                    % (path, parsed[0], parsed[1], field, since[0], since[1],
                                       re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), field)))
    existing_gates = {k: bool(v) for k, v in (current.get("featureGates") or {}).items()}
    merged = dict(existing_gates)
    for gate, value in (feature_gates or {}).items():
        if value is None:
            merged.pop(gate, None)
        else:
            merged[gate] = bool(value)
    if version is not None:
        decision = fg.filter_gates(merged, version, component="kubelet", policy=policy)
        if decision.errors:
            raise SettingsError(_refused(decision.errors))
        warnings.extend(decision.warnings)
        dropped.update(decision.dropped)
        merged = decision.gates
    gate_changes = {}
    for gate in set(existing_gates) | set(feature_gates or {}):
        if merged.get(gate) != existing_gates.get(gate):
            gate_changes[gate] = merged.get(gate)
    changes = {k: v for k, v in settings.items() if current.get(k) != v}
    if gate_changes:
        changes["featureGates"] = gate_changes
    new_text, notes = ff.kubelet_config_update(text, changes, path) if changes else (text, [])
    config = ff.kubelet_config_read(new_text, path)
    return {"text": new_text, "config": config, "feature_gates": config.get("featureGates") or {},
            "warnings": warnings, "dropped": dropped, "notes": notes}
