#!/usr/bin/env bash
# Run ansible-test from a real ansible_collections/kubestorage/enablement directory (it refuses
# symlinks), offline: the tree is rsynced from the files git tracks or would track, and
# ansible-test's pip bootstrap script is pre-seeded with scripts/get-pip-offline.py.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# Outside the checkout: inside it, ansible-test would find this repo's git and see an ignored dir.
dest="${TMPDIR:-/tmp}/kubestorage-ansible-test-$(echo "$top" | sha256sum | cut -c1-12)/ansible_collections/kubestorage/enablement"
mkdir -p "$dest"
cd "$top"
git ls-files -co --exclude-standard -z | rsync -a --delete --from0 --files-from=- ./ "$dest/"
# drop files that are no longer in the checkout
(cd "$dest" && find . -type f ! -path './tests/output/*' -print0) | while IFS= read -r -d '' f; do
  [ -e "$top/$f" ] || rm -f "$dest/$f"
done
pip_version=$(python - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
cp "$top/scripts/get-pip-offline.py" "$cache/get_pip_${pip_version//./_}.py"
pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$dest"
exec ansible-test "$@" --venv --python "$pyver"
