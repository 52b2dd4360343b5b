#!/usr/bin/env bash
# The test suite: pytest over the packages' unit tests (src/*/test) and the
# system tests (tests/). Run through `make test`, which sets up and lints first.
set -uo pipefail
cd "$(dirname "$0")/.."

python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$rc"
