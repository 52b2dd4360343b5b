#!/usr/bin/env bash
# The API reference: mkdocs + mkdocstrings render docs/api/ from the docstrings into
# build/site/ (open build/site/index.html). --strict: any warning fails, including
# tools/griffe_uvs.py's (a public module without a page, public API without a docstring)
# and links between the docs pages that point nowhere. Part of `make test`; ~10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== docs (mkdocs --strict)"
# Not --quiet: with it, mkdocs 1.6 no longer counts the warnings that --strict fails on.
python -m mkdocs build --strict "$@"
echo "docs: ok, build/site/index.html"
