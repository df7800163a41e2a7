# Shared by demo.sh and test.sh: install what Meetpunt needs on Debian 12, time each phase.
set -euo pipefail

phase_start=$(date +%s)
phase() {
    local now; now=$(date +%s)
    echo "==> [$(date +%H:%M:%S), previous phase $((now - phase_start)) s] $*"
    phase_start=$now
}

# Installs the Debian packages that are missing; apt-get update runs only when something is.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

BUILD_PACKAGES=(git gcc libc6-dev libstdc++-12-dev binutils pkg-config libpcap-dev libnl-3-dev libnl-genl-3-dev libnl-route-3-dev libcurl4-openssl-dev
                libyaml-dev libssl-dev zlib1g-dev libzstd-dev libsqlite3-dev iproute2 ethtool curl)
TEST_PACKAGES=(postgresql-15 postgresql-client-15 iputils-ping xz-utils binutils python3 tcpdump openssl e2fsprogs prometheus chromium chromium-driver python3-selenium fonts-dejavu-core)

ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        [ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
    fi
    command -v swift >/dev/null 2>&1 || { echo "Swift 6 toolchain not found (expected on PATH or in /opt/swift)" >&2; exit 1; }
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
