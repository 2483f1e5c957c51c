#!/usr/bin/env bash
# Refresh the screenshots in docs/screens/: the UI tour (tests/ui/tour.py) on a sample owner, in Debian's
# Chromium driven by Playwright for Python (never a downloaded browser). Run at the repository root.
set -euo pipefail
cargo build --quiet
if [ ! -x target/ui-venv/bin/python ]; then
  python3 -m venv target/ui-venv
fi
target/ui-venv/bin/pip install -q --disable-pip-version-check playwright==1.49.1 axe-playwright-python==0.1.8
rm -rf docs/screens
target/ui-venv/bin/python tests/ui/tour.py --duo target/debug/duo --screens docs/screens "$@"
ls docs/screens
