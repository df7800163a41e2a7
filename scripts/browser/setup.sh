#!/usr/bin/env bash
# Installs what dashboard_check.py needs, from Debian only, when missing: Chromium, its WebDriver and
# Selenium for Debian's python3 (no PyPI, so no venv: the three move together with Debian's updates).
# Then proves that headless Chromium starts here. Idempotent; needs root (or sudo) to install.
source "$(dirname "$0")/../lib.sh"

BROWSER_PACKAGES=(chromium chromium-driver python3-selenium fonts-dejavu-core)
ensure_packages "${BROWSER_PACKAGES[@]}"

/usr/bin/python3 -c 'import selenium' \
    || { echo "Debian's python3 cannot import selenium (python3-selenium)" >&2; exit 1; }
# The same flags dashboard_check.py starts the browser with, minus the profile and window.
out=$(timeout 60 /usr/lib/chromium/chromium --headless=new --no-sandbox --disable-dev-shm-usage --disable-gpu \
    --no-first-run --disable-background-networking --dump-dom 'data:text/html,<p id=ok>ok</p>' 2>/dev/null) \
    || { echo "headless Chromium did not start (exit $?)" >&2; exit 1; }
grep -q 'id="ok"' <<<"$out" || { echo "headless Chromium started but rendered nothing" >&2; exit 1; }
echo "browser check ready: $(/usr/lib/chromium/chromium --version 2>/dev/null | xargs), $(chromedriver --version | cut -d' ' -f1-2)," \
     "selenium $(/usr/bin/python3 -c 'import selenium; print(selenium.__version__)')"
