#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flexvolume_driver
short_description: Install, upgrade, verify, roll back or remove one FlexVolume driver on a node
version_added: 0.1.0
description:
  - Installs one FlexVolume driver executable at C(<plugin_dir>/<vendor>~<driver>/<driver>), where kubelet's
    prober finds it.
  - The change is atomic for kubelet. A new driver dir is assembled under a hidden name and renamed into place;
    an upgrade writes a hidden temp file in the driver dir and renames it over the old executable. Kubelet
    ignores hidden names, so it never sees a partial or non-executable driver.
  - The driver is verified the way kubelet calls it. C(<driver> init) runs with stdout and stderr combined, the
    output must be one JSON object with C(status=Success) and exit code 0, and its capabilities are merged over
    kubelet's defaults. The new version is verified under its hidden name before it is put in place, and again
    at its real path afterwards. If that second check fails, the previous executable is restored, or the new
    dir is removed when there was none.
  - The replaced version is kept as a hard link in the hidden C(.backups) dir next to the driver.
  - Runs for the same plugin dir on the same node are serialized with a lock on the plugin dir.
  - With O(src), the action plugin sends the file only when the node does not already have an executable with
    the same sha256.
author:
  - kubestorage maintainers (@kubestorage)
options:
  name:
    description:
      - The driver, as V(vendor~driver) (the dir name) or V(vendor/driver) (the pod spec's C(flexVolume.driver)).
        Both mean dir C(<plugin_dir>/vendor~driver) and executable C(driver). A name without a vendor, such as
        V(lvm), means C(<plugin_dir>/lvm/lvm).
      - Must be a Kubernetes qualified name. Names containing C(..), extra path separators, or a leading C(.) are
        rejected before anything on the node is touched.
    type: str
    required: true
  state:
    description:
      - V(present) installs or upgrades the driver. V(absent) removes its whole dir (hidden rename, then delete).
      - Removing a driver that pods still use strands their volumes; the module warns about this.
    type: str
    choices: [present, absent]
    default: present
  src:
    description:
      - Path of the driver executable on the controller. The action plugin sends it to the node only when the
        node's installed driver has a different sha256.
      - Exactly one of O(src), O(remote_src) and O(content) is required with O(state=present).
    type: path
  remote_src:
    description:
      - Path of the driver executable on the node.
    type: path
  content:
    description:
      - The driver itself, for example a shell script.
    type: str
  checksum:
    description:
      - Expected checksum of the source, V(sha256:<hex>). A mismatch fails before anything is installed.
    type: str
  plugin_dir:
    description:
      - kubelet's C(--volume-plugin-dir). Created if missing.
      - Must match kube-controller-manager's C(--flex-volume-plugin-dir).
    type: path
    default: /usr/libexec/kubernetes/kubelet-plugins/volume/exec
  owner:
    description: Owner of the executable, a name or a numeric id.
    type: str
    default: root
  group:
    description: Group of the executable, a name or a numeric id.
    type: str
    default: root
  mode:
    description:
      - Permissions of the executable, as an octal string such as V('0755'). The owner must be able to execute it.
    type: raw
    default: '0755'
  verify:
    description:
      - Call C(<driver> init) like kubelet and fail on anything kubelet would reject.
      - When V(false), the driver is installed without being run.
    type: bool
    default: true
  init_timeout:
    description:
      - Seconds C(init) may take. A driver that takes longer is killed along with its child processes, and
        verification fails. Kubelet itself has no timeout, so a hung init would hang its prober.
    type: int
    default: 30
  required_capabilities:
    description:
      - Capabilities the driver must report after they are merged over kubelet's defaults, as a dict of
        capability name to V(true) or V(false). For example, C(attach) set to V(false) for a driver that must
        not be attachable. A mismatch fails verification.
      - kubelet's defaults are C(attach=true), C(selinuxRelabel=true), C(supportsMetrics=false), C(fsGroup=true)
        and C(requiresFSResize=true).
    type: dict
  requires:
    description:
      - Commands the driver needs on the node, such as V(jq) or V(mount.nfs). If any is missing, the task fails
        with their names before anything is installed.
    type: list
    elements: str
    default: []
  keep_backups:
    description: How many replaced versions to keep in the hidden C(.backups) dir next to the driver.
    type: int
    default: 3
  nudge:
    description:
      - Refresh the executable's mtime so that kubelet's fsnotify watch fires again, and report C(changed).
      - This is the usual field workaround when kubelet loses a driver and reports C(no volume plugin matched).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details:
      - Predicts exactly, including verification. A new version is verified from a scratch copy outside the
        plugin dir, so nothing under O(plugin_dir) is written.
  diff_mode:
    support: full
    details: Shows the old and new sha256 and init capabilities.
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
notes:
  - Needs Python's standard library only on the node.
seealso:
  - module: kubestorage.enablement.flexvolume_driver_info
  - name: FlexVolume in Kubernetes
    description: How kubelet finds and calls FlexVolume drivers.
    link: https://github.com/kubernetes/community/blob/master/contributors/devel/sig-storage/flexvolume.md
"""

EXAMPLES = r"""
- name: Install a driver from the controller
  kubestorage.enablement.flexvolume_driver:
    name: example.com~nfs
    src: files/nfs
    checksum: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    requires: [jq, mount.nfs]
    required_capabilities:
      attach: false

- name: Install a driver that is already on the node, into a plugin dir under /var
  kubestorage.enablement.flexvolume_driver:
    name: example.com/lvm
    remote_src: /opt/drivers/lvm
    plugin_dir: /var/lib/kubelet/volumeplugins

- name: Make kubelet see the driver again (no volume plugin matched)
  kubestorage.enablement.flexvolume_driver:
    name: example.com~nfs
    src: files/nfs
    nudge: true

- name: Remove a driver
  kubestorage.enablement.flexvolume_driver:
    name: example.com~nfs
    state: absent
"""

RETURN = r"""
path:
  description: Path of the driver executable.
  returned: always
  type: str
  sample: /usr/libexec/kubernetes/kubelet-plugins/volume/exec/example.com~nfs/nfs
checksum:
  description: sha256 of the installed executable (null after O(state=absent)).
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
previous_checksum:
  description: sha256 of the executable before this task (null when there was none).
  returned: always
  type: str
capabilities:
  description: The driver's capabilities merged over kubelet's defaults, as kubelet will see them.
  returned: when verified
  type: dict
  sample: {attach: false, selinuxRelabel: true, supportsMetrics: false, fsGroup: true, requiresFSResize: true}
init:
  description: The parsed output of C(<driver> init).
  returned: when verified
  type: dict
  sample: {status: Success, capabilities: {attach: false}}
backup_file:
  description: Where the replaced version was kept (null when nothing was replaced).
  returned: always
  type: str
rolled_back:
  description: Whether a failed verification restored the previous state.
  returned: always
  type: bool
action:
  description: What was done (V(install), V(upgrade), V(attributes), V(remove), V(none)).
  returned: always
  type: str
cleaned_up:
  description: Hidden leftovers of interrupted runs for this driver that were removed.
  returned: always
  type: list
  elements: str
transferred:
  description: Whether the action plugin sent O(src) to the node (false when the node already had it).
  returned: when O(src) is given
  type: bool
transfer_required:
  description:
    - Internal, between the module and its action plugin. True when O(src) was given and the node's copy
      differs, so the file must be sent.
  returned: when the action plugin must send the file
  type: bool
"""

import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils.flexvolume import (
    DriverCallError,
    DriverInstaller,
    FlexVolumeError,
    file_sha256,
    missing_commands,
    parse_checksum,
    parse_driver_name,
    probe_driver,
)


def _resolve_id(value, lookup, attr, what):
    if value is None:
        return 0
    if str(value).isdigit():
        return int(value)
    try:
        return getattr(lookup(value), attr)
    except KeyError:
        raise FlexVolumeError("%s %r does not exist on this node; create it first or give a numeric id"
                              % (what, value))


def _parse_mode(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise FlexVolumeError("mode %r: give an octal string such as '0755'" % (value,))


def _describe(checksum, capabilities):
    if checksum is None:
        return "(absent)\n"
    lines = ["sha256: %s" % checksum]
    for key in sorted(capabilities or {}):
        lines.append("capabilities.%s: %s" % (key, str(capabilities[key]).lower()))
    return "\n".join(lines) + "\n"


def run(module):
    p = module.params
    name = parse_driver_name(p["name"])
    installer = DriverInstaller(
        p["plugin_dir"], name,
        uid=_resolve_id(p["owner"], pwd.getpwnam, "pw_uid", "owner"),
        gid=_resolve_id(p["group"], grp.getgrnam, "gr_gid", "group"),
        mode=_parse_mode(p["mode"]), keep_backups=p["keep_backups"], verify=p["verify"],
        init_timeout=p["init_timeout"], required_capabilities=p["required_capabilities"])
    result = {"changed": False, "rolled_back": False, "backup_file": None}

    if p["state"] == "absent":
        res = installer.remove(check_mode=module.check_mode)
        result.update(res)
        if res["action"] == "remove":
            module.warn("FlexVolume driver %s removed from %s: volumes still mounted through it cannot be "
                        "unmounted until it is installed again" % (name.qualified, installer.driver_dir))
        if module._diff:
            result["diff"] = {"before": _describe(res["previous_checksum"], None), "after": _describe(None, None),
                              "before_header": installer.path, "after_header": installer.path}
        return result

    missing = missing_commands(p["requires"])
    if missing:
        raise FlexVolumeError("driver %s requires %s, not found on this node (PATH and /sbin, /usr/sbin); "
                              "install the packages that provide them first. Nothing was changed."
                              % (name.qualified, ", ".join(missing)))
    expected = parse_checksum(p["checksum"])

    if p["src"] and not p["remote_src"]:
        # First pass from the action plugin: use the node's copy if it is already the controller's
        # file (the installer checks that under its lock, hashing the installed file once).
        source, source_checksum = None, expected
    else:
        if p["remote_src"]:
            source = p["remote_src"]
            if not os.path.isfile(source):
                raise FlexVolumeError("remote_src %s: no such file on the node; give the path of the driver "
                                      "executable on the node, or use src for a file on the controller" % source)
        else:
            source = os.path.join(module.tmpdir, "driver-content")
            with open(source, "wb") as fh:
                fh.write(p["content"].encode("utf-8"))
        source_checksum = file_sha256(source)
        if expected and source_checksum != expected:
            what = "remote_src %s" % source if p["remote_src"] else "content"
            raise FlexVolumeError("checksum mismatch for %s: expected sha256:%s, got sha256:%s; fix the checksum "
                                  "or the source. Nothing was changed." % (what, expected, source_checksum))

    before_caps = None
    cur = installer.current() if module._diff and installer.verify and source is not None else None
    if cur and cur["checksum"] != source_checksum:
        try:
            before_caps = probe_driver(installer.path, p["init_timeout"])["capabilities"]
        except DriverCallError:
            pass  # the old version is broken: the diff shows no capabilities for it
    res = installer.install(source, source_checksum, check_mode=module.check_mode, scratch_dir=module.tmpdir)
    if res.pop("transfer_required"):
        result.update(transfer_required=True, path=res["path"], previous_checksum=res["previous_checksum"],
                      changed=res["changed"])
        return result
    result.update(res)
    if p["nudge"]:
        installer.nudge(check_mode=module.check_mode)
        result["changed"] = True
        result["nudged"] = True
    if module._diff:
        if res["previous_checksum"] == res["checksum"]:
            before_caps = res["capabilities"]
        result["diff"] = {"before": _describe(res["previous_checksum"], before_caps),
                          "after": _describe(res["checksum"], res["capabilities"]),
                          "before_header": installer.path, "after_header": installer.path}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            src=dict(type="path"),
            remote_src=dict(type="path"),
            content=dict(type="str", no_log=False),
            checksum=dict(type="str"),
            plugin_dir=dict(type="path", default="/usr/libexec/kubernetes/kubelet-plugins/volume/exec"),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
            mode=dict(type="raw", default="0755"),
            verify=dict(type="bool", default=True),
            init_timeout=dict(type="int", default=30),
            required_capabilities=dict(type="dict"),
            requires=dict(type="list", elements="str", default=[]),
            keep_backups=dict(type="int", default=3),
            nudge=dict(type="bool", default=False),
        ),
        mutually_exclusive=[["content", "src"], ["content", "remote_src"]],
        required_if=[["state", "present", ["src", "remote_src", "content"], True]],
        supports_check_mode=True,
    )
    if module.params["init_timeout"] < 1:
        module.fail_json(msg="init_timeout %s: must be at least 1 second" % module.params["init_timeout"])
    if module.params["keep_backups"] < 0:
        module.fail_json(msg="keep_backups %s: must be 0 or more" % module.params["keep_backups"])
    try:
        result = run(module)
    except DriverCallError as exc:
        output = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else exc.output
        module.fail_json(msg=exc.msg, rolled_back=exc.rolled_back, driver_output=output, driver_rc=exc.rc)
    except FlexVolumeError as exc:
        module.fail_json(msg=exc.msg, rolled_back=False)
    except OSError as exc:
        module.fail_json(msg="%s: %s (plugin_dir %s)" % (exc.filename or "", exc.strerror, module.params["plugin_dir"]),
                         rolled_back=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
