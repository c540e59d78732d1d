# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Options of the modules that check gates and flags against a Kubernetes version."""

    DOCUMENTATION = r"""
options:
  kubernetes_version:
    description:
      - The component's Kubernetes version, for example V(1.25) or V(v1.25.3); gates and flags are checked
        against it.
      - When omitted, it is read from C(kubelet --version) for kubelet, or from the image tag of a static pod.
        Otherwise the task fails and asks for it.
    type: str
  gate_policy:
    description:
      - What to do with a gate or flag the component's version would refuse (removed, not yet added, or locked).
        This applies to entries already in the file as well as to requested ones.
      - V(drop_obsolete) leaves out removed gates set to true and removed flags, with a warning. A removed gate
        set to false or a locked gate set to false still fails, since that cannot be honoured.
      - V(strict) fails on any of them, before anything is written.
    type: str
    choices: [drop_obsolete, strict]
    default: drop_obsolete
"""
