#!/usr/bin/env bash
# Idempotent: the system tools that only the test suite needs (not grading itself).
#   chromium    renders the HTML class report in the browser tests
#   debootstrap builds the clean Debian root of the Gradescope clean-OS test
# Installed with apt-get when running as root; otherwise the tests that need them
# fail with a message naming the package (they do not skip).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-tools: installing ${missing[*]} with apt-get"
  apt-get update -qq || echo "test-tools: apt-get update failed; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "test-tools: could not install ${missing[*]}; the tests that need them will fail" >&2
else
  echo "test-tools: please install ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
fi
