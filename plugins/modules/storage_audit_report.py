#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_audit_report
short_description: Turn storage facts gathered from every node and the Kubernetes API into a fleet report
version_added: 0.1.0
description:
  - Builds one report of a fleet's storage setup from facts the read-only modules gathered on every node, and
    from the Kubernetes API. It has one row per node, the FlexVolume drivers with their checksums across nodes,
    the CSIDrivers and StorageClasses, and findings that highlight drift.
  - Findings include drivers whose checksum differs between nodes, drivers missing on some nodes of a group,
    drivers kubelet would reject, and plugin dirs that differ between kubelet and kube-controller-manager or
    between nodes. Feature gates and flags that a node's version refuses or will soon remove, mounts and
    container runtimes without shared propagation, and several or no default StorageClasses are found too, as
    are StorageClasses whose provisioner is unknown and nodes or the API that could not be reached.
  - Writes C(storage-audit.json) and C(storage-audit.md) to O(dest_dir), creating the dir. Runs on the
    controller (C(localhost)).
  - A file counts as changed only when it differs by more than the generation time, which is the top-level
    C(generated_at) of the JSON and the C(Generated at:) line of the Markdown. An unchanged file is not
    rewritten, so the generation time in the files is that of the last run that changed their content.
  - Never changes anything on the nodes.
author:
  - kubestorage maintainers (@kubestorage)
options:
  nodes:
    description:
      - Facts per node, host name to a mapping with these keys, each optional.
      - C(groups) is the node's inventory groups (C(group_names)).
      - C(kubelet) is the result of M(kubestorage.enablement.kubelet_info).
      - C(flexvolume) is the result of M(kubestorage.enablement.flexvolume_driver_info), ideally with C(probe=true).
      - C(kubelet_flags) is a list of results of M(kubestorage.enablement.component_flags) for kubelet, run in check
        mode without changes, one per file that holds kubelet's flags, in command line order.
      - C(kubelet_config) is the KubeletConfiguration (C(featureGates), C(volumePluginDir)) or the result of
        M(kubestorage.enablement.kubelet_config) run in check mode.
      - C(controller_manager) and C(apiserver) are results of M(kubestorage.enablement.component_flags) for
        kube-controller-manager and kube-apiserver, run in check mode without changes.
      - C(unreachable) and C(error) say why a node gave no facts or only some.
      - Skipped results are ignored. Failed results are reported.
    type: dict
    required: true
  api:
    description:
      - What the Kubernetes API returned. C(csidrivers) and C(storageclasses) are lists of objects, for example the
        C(resources) of C(kubernetes.core.k8s_info). C(error) is why querying failed, or null.
      - C(error) null or empty means the query worked.
      - Leave O(api) out when the API was not queried. The report then says so.
    type: dict
  dest_dir:
    description: The dir to write C(storage-audit.json) and C(storage-audit.md) to. It is created if missing.
    type: path
    required: true
  fail_on:
    description:
      - Fail the task, after writing the report, when there are findings of this severity or worse.
      - V(never) never fails for findings, V(error) fails on errors, V(warning) on errors and warnings.
    type: str
    default: never
    choices: [never, error, warning]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Builds the report and says which files would change, but writes nothing.
  diff_mode:
    support: full
    details: Shows the Markdown file's content before and after.
  platform:
    platforms: posix
seealso:
  - module: kubestorage.enablement.kubelet_info
  - module: kubestorage.enablement.flexvolume_driver_info
  - module: kubestorage.enablement.component_flags
"""

EXAMPLES = r"""
- name: Write the fleet report from facts gathered earlier in the play
  kubestorage.enablement.storage_audit_report:
    nodes: "{{ audit_nodes }}"
    api:
      csidrivers: "{{ csidrivers.resources | default([]) }}"
      storageclasses: "{{ storageclasses.resources | default([]) }}"
      error: "{{ (storageclasses is failed) | ternary(storageclasses.msg | default('query failed'), '') }}"
    dest_dir: "{{ playbook_dir }}/reports"
    fail_on: error
  delegate_to: localhost
  run_once: true
  register: audit

- name: Show the counts
  ansible.builtin.debug:
    var: audit.summary
"""

RETURN = r"""
report:
  description:
    - The report. It has C(generated_at), C(summary), C(nodes) (one row per host), C(drivers) (checksums per driver
      across nodes), C(api) (CSIDrivers, StorageClasses, default classes) and C(findings).
    - Each finding has C(severity) (V(error), V(warning) or V(info)), C(kind), C(host) (null when fleet-wide),
      C(subject) and C(message).
  returned: always
  type: dict
json_path:
  description: The JSON file.
  returned: always
  type: str
  sample: /srv/reports/storage-audit.json
markdown_path:
  description: The Markdown file.
  returned: always
  type: str
  sample: /srv/reports/storage-audit.md
summary:
  description: Counts of findings per severity and per kind, of nodes, of unreachable nodes and of drivers.
  returned: always
  type: dict
  sample: {findings: 2, by_severity: {error: 1, warning: 1, info: 0}, nodes: 3, nodes_unreachable: 0, drivers: 1}
files_changed:
  description: The files whose content changed (or would change in check mode).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubestorage.enablement.plugins.module_utils.audit_report import (
    AuditError,
    at_least,
    build_report,
    plan_files,
    utc_now,
)
from ansible_collections.kubestorage.enablement.plugins.module_utils.text_files import read_text, text_diff, write_text

JSON_NAME = "storage-audit.json"
MARKDOWN_NAME = "storage-audit.md"


def read_existing(module, path):
    """The file's text, None when missing, "" when it is not UTF-8 (so it counts as changed)."""
    try:
        return read_text(path)
    except UnicodeDecodeError:
        return ""
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (path, exc.strerror), path=path)
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type="dict", required=True),
            api=dict(type="dict"),
            dest_dir=dict(type="path", required=True),
            fail_on=dict(type="str", default="never", choices=["never", "error", "warning"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    dest_dir = p["dest_dir"]
    if os.path.exists(dest_dir) and not os.path.isdir(dest_dir):
        module.fail_json(msg="dest_dir %s exists and is not a directory" % dest_dir)
    try:
        report = build_report(p["nodes"], api=p["api"], generated_at=utc_now())
    except AuditError as exc:
        module.fail_json(msg=exc.msg)

    json_path = os.path.join(dest_dir, JSON_NAME)
    markdown_path = os.path.join(dest_dir, MARKDOWN_NAME)
    old_json = read_existing(module, json_path)
    old_markdown = read_existing(module, markdown_path)
    plan = plan_files(report, old_json, old_markdown)
    files = [(json_path, plan["json"]), (markdown_path, plan["markdown"])]
    changed_files = [path for path, item in files if item["changed"]]
    result = dict(changed=bool(changed_files), report=report, summary=report["summary"], json_path=json_path,
                  markdown_path=markdown_path, files_changed=changed_files)
    if module._diff:
        after = plan["markdown"]["text"] if plan["markdown"]["changed"] else old_markdown
        result["diff"] = text_diff(markdown_path, old_markdown, after)
    if not module.check_mode:
        for path, item in files:
            if not item["changed"]:
                continue
            try:
                write_text(module, path, item["text"])
            except OSError as exc:
                module.fail_json(msg="%s: %s" % (path, exc.strerror), **result)

    if p["fail_on"] != "never":
        bad = at_least(report, p["fail_on"])
        if bad:
            where = "written to %s" % dest_dir if not module.check_mode else "not written (check mode)"
            listed = "; ".join("[%s] %s" % (finding["severity"], finding["message"]) for finding in bad)
            module.fail_json(msg="%d finding(s) of severity %s or worse (report %s): %s"
                             % (len(bad), p["fail_on"], where, listed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
