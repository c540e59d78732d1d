# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run an Ansible module (arguments as JSON on stdin, as Ansible passes them) and SIGKILL it
right before its Nth change to the filesystem.

    python crash_module.py <module> <N> <count-file>

A change is a call of one of CHANGES below (file creation through os.open included); shutil,
tempfile and ansible-core reach the same functions through the os module, so they are counted
too. N = 0 kills nothing: the number of changes the run made is written to count-file at exit.
Test-only: nothing in the collection knows about it.
"""

import atexit
import os
import runpy
import signal
import sys

CHANGES = ("rename", "replace", "link", "symlink", "unlink", "remove", "mkdir", "rmdir", "write", "fsync",
           "fchmod", "fchown", "chmod", "chown", "lchown", "utime", "truncate", "ftruncate")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC


def main():
    module, kill_at, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = [0]

    def change():
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(name, real):
        def wrapper(*args, **kwargs):
            change()
            return real(*args, **kwargs)
        wrapper.__name__ = name
        return wrapper

    for name in CHANGES:
        if hasattr(os, name):
            setattr(os, name, wrap(name, getattr(os, name)))
    real_open = os.open

    def counted_open(path, flags, *args, **kwargs):
        if flags & WRITE_FLAGS:
            change()
        return real_open(path, flags, *args, **kwargs)

    os.open = counted_open

    def report():
        with open(count_file, "w") as fh:  # builtin open: not counted
            fh.write(str(count[0]))

    atexit.register(report)
    sys.argv = [module]
    runpy.run_module("ansible_collections.kubestorage.enablement.plugins.modules." + module, run_name="__main__",
                     alter_sys=True)


if __name__ == "__main__":
    main()
