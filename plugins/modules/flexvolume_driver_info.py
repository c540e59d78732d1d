#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flexvolume_driver_info
short_description: Report the FlexVolume drivers in a kubelet plugin dir and what kubelet would reject
version_added: 0.1.0
description:
  - Lists every driver in a kubelet volume plugin dir the way kubelet's prober maps it. For each driver it
    reports the name, vendor, executable path, sha256, size, mode and owner.
  - With O(probe=true), it also calls C(<driver> init) as kubelet does and reports whether the driver would
    load, with its merged capabilities.
  - Reports problems too. These are dirs without their executable, executables that are not executable,
    hidden leftovers of interrupted installs, driver names kubelet would reject, and drivers whose init
    kubelet would fail.
  - Never changes anything.
author:
  - kubestorage maintainers (@kubestorage)
options:
  plugin_dir:
    description: kubelet's C(--volume-plugin-dir).
    type: path
    default: /usr/libexec/kubernetes/kubelet-plugins/volume/exec
  probe:
    description: Call C(<driver> init) for every driver, as kubelet's prober does.
    type: bool
    default: false
  init_timeout:
    description: Seconds each C(init) may take before it is killed and reported as hung.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module never changes anything, so check mode runs it as usual.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
  platform:
    platforms: posix
seealso:
  - module: kubestorage.enablement.flexvolume_driver
"""

EXAMPLES = r"""
- name: List the drivers and check that each one loads
  kubestorage.enablement.flexvolume_driver_info:
    probe: true
  register: flex

- name: Fail when kubelet would reject something
  ansible.builtin.assert:
    that: flex.problems | length == 0
    fail_msg: "{{ flex.problems }}"
"""

RETURN = r"""
plugin_dir:
  description: The plugin dir that was read.
  returned: always
  type: str
exists:
  description: Whether the plugin dir exists.
  returned: always
  type: bool
drivers:
  description: The drivers kubelet would try to load.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The driver name as in a pod spec (C(vendor/driver)).
      type: str
      sample: example.com/nfs
    vendor:
      description: The vendor part (null when the name has none).
      type: str
    driver:
      description: The executable's name.
      type: str
    dir:
      description: The driver dir.
      type: str
    path:
      description: The executable's path.
      type: str
    checksum:
      description: sha256 of the executable.
      type: str
    size:
      description: Size in bytes.
      type: int
    mode:
      description: Permissions, octal.
      type: str
      sample: '0755'
    owner:
      description: Owner name (or id).
      type: str
    group:
      description: Group name (or id).
      type: str
    backups:
      description: Number of replaced versions kept in the hidden C(.backups) dir.
      type: int
    loads:
      description: Whether kubelet would load it (with O(probe=true)).
      type: bool
    capabilities:
      description: Capabilities merged over kubelet's defaults (with O(probe=true)).
      type: dict
    init:
      description: Parsed C(init) output (with O(probe=true)).
      type: dict
    probe_error:
      description: Why kubelet would fail to load it (with O(probe=true)).
      type: str
problems:
  description: What kubelet would reject or what an interrupted run left behind.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path concerned.
      type: str
    problem:
      description: What is wrong and what follows from it.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils.flexvolume import scan_plugin_dir


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plugin_dir=dict(type="path", default="/usr/libexec/kubernetes/kubelet-plugins/volume/exec"),
            probe=dict(type="bool", default=False),
            init_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    try:
        report = scan_plugin_dir(module.params["plugin_dir"], probe=module.params["probe"],
                                 timeout=module.params["init_timeout"])
    except OSError as exc:
        module.fail_json(msg="plugin_dir %s: %s" % (module.params["plugin_dir"], exc.strerror))
    module.exit_json(changed=False, plugin_dir=module.params["plugin_dir"], **report)


if __name__ == "__main__":
    main()
