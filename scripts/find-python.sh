#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (current ansible-core needs it), or fail saying how to get one.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for c in "${PYTHON:-}" python3.13 python3.12 python3; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then echo "$p"; exit 0; fi
done
# pyenv installs that are not the active version are not on PATH through the shims.
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
  [ -x "$p" ] && ok "$p" && { echo "$p"; exit 0; }
done
echo "find-python: no Python >= 3.12 found; install one (e.g. apt-get install python3.12 on Ubuntu 24.04, or pyenv) or set PYTHON=/path/to/python3.12" >&2
exit 1
