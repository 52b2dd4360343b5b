#!/usr/bin/env bash
# Lint: ruff (pyflakes, pycodestyle, import order), package.xml validity, Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .

echo "== package.xml"
python tools/check_package_xml.py src/*/package.xml

echo "== hadolint"
hadolint docker/Dockerfile
echo "lint: ok"
