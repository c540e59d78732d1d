# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and atomically replacing the small text files the flag modules edit."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8")
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def edit_lock(path, enabled=True):
    """Hold an exclusive flock on the dir of path (or its nearest existing parent) while editing it.

    Two runs that read, change and replace the same file would otherwise lose one run's change
    (both read the old text, the second rename wins). The lock is advisory: it serializes this
    collection's modules only, and leaves no file behind.
    """
    if not enabled:
        yield
        return
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory) and directory != os.path.dirname(directory):
        directory = os.path.dirname(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def hidden_backup(path, now=time.time):
    """Copy path to .<name>.<UTC time>.bak in the same dir and return it.

    For static pod manifests: kubelet reads every non-hidden file in the manifests dir as a
    pod, so a visible backup there would start a second copy of the component.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now()))
    backup = os.path.join(os.path.dirname(path), ".%s.%s.bak" % (os.path.basename(path), stamp))
    shutil.copy2(path, backup)
    return backup


def write_text(module, path, text, backup=False, backup_hidden=False, mode=0o644):
    """Replace path with text atomically (temp file in the same dir, then atomic_move).

    An existing file keeps its owner and mode; a new one gets mode. Returns the backup path.
    The temp file's name is hidden so that watchers of the dir (kubelet's static pod source)
    ignore it.
    """
    exists = os.path.exists(path)
    backup_file = None
    if exists and backup:
        backup_file = hidden_backup(path) if backup_hidden else module.backup_local(path)
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if not exists:
            os.chmod(tmp, mode)
        module.atomic_move(tmp, path, unsafe_writes=False)
        if not exists:
            os.chmod(path, mode)  # atomic_move gives a new file the umask's default mode
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return backup_file


def text_diff(path, before, after):
    """A diff dict for Ansible's --diff."""
    return {"before": before or "", "after": after or "", "before_header": path if before is not None else "(absent)",
            "after_header": path}


def apply_text(module, path, before, after, result, backup=False, backup_hidden=False, mode=0o644):
    """Report (diff) and, outside check mode, write a planned change of path; updates result."""
    changed = after != (before or "") or (before is None and after != "")
    result["changed"] = changed
    if module._diff:
        result["diff"] = text_diff(path, before, after)
    if changed and not module.check_mode:
        try:
            backup_file = write_text(module, path, after, backup=backup, backup_hidden=backup_hidden, mode=mode)
        except OSError as exc:
            module.fail_json(msg="%s: %s; the file was left as it was" % (path, exc.strerror), path=path)
        if backup_file:
            result["backup_file"] = backup_file
    return changed
