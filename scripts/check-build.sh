#!/usr/bin/env bash
# Build the collection tarball and install it into an empty collections path.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/.cache/build"
rm -rf "$out"; mkdir -p "$out"
cd "$top"
ansible-galaxy collection build --force --output-path "$out" . >/dev/null
tarball=$(ls "$out"/kubestorage-enablement-*.tar.gz)
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
ANSIBLE_COLLECTIONS_PATH="$empty" ansible-galaxy collection install --offline -p "$empty" "$tarball" >/dev/null
listed=$(ANSIBLE_COLLECTIONS_PATH="$empty" ansible-galaxy collection list -p "$empty" kubestorage.enablement 2>/dev/null | grep '^kubestorage.enablement')
version=$(awk '/^version:/ {print $2}' galaxy.yml)
[ "$(echo "$listed" | awk '{print $2}')" = "$version" ] || { echo "check-build: installed collection not found: $listed" >&2; exit 1; }
for junk in .venv .cache lab/.state tests/output .git; do
  if tar -tzf "$tarball" | grep -q "^$junk/"; then echo "check-build: $junk leaked into $tarball" >&2; exit 1; fi
done
echo "check-build: $(basename "$tarball") ($(du -h "$tarball" | cut -f1)) installs into an empty collections path"
