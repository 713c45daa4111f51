# Shared helpers for scripts/dev and scripts/test. Sourced, not run.
# Installs only what is missing: from Debian's packages, moto from PyPI, dynalite from the npm registry.

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "need root to run: $* (install it by hand, then re-run)" >&2; return 1
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

have() { command -v "$1" >/dev/null 2>&1; }

nats_server_bin() {
    if have nats-server; then command -v nats-server
    elif [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server
    fi
}

require_cargo() {
    if ! have cargo; then
        echo "cargo not found: this project needs the Rust toolchain pinned in rust-toolchain.toml (1.95.0)" >&2
        exit 1
    fi
}

# nats-server: Debian's package (2.9.10 on bookworm) is all the tests and dev mode need.
ensure_nats_server() {
    if [ -z "$(nats_server_bin)" ]; then
        step "installing nats-server (Debian package)"
        apt_install nats-server
    fi
    export NATS_SERVER_BIN="$(nats_server_bin)"
}

# cargo-deny, from crates.io when missing. Building it costs ~9 minutes once per new machine (141
# crates on 2 shared cores; CONTRIBUTING.md); after that it is in ~/.cargo/bin and the check takes
# about a second.
ensure_cargo_deny() {
    if ! have cargo-deny; then
        step "installing cargo-deny (crates.io)"
        cargo install --locked --debug cargo-deny
    fi
}

# Everything scripts/test needs beyond cargo.
ensure_test_deps() {
    require_cargo
    ensure_nats_server
    local missing=()
    have systemd-analyze || missing+=(systemd)
    have python3 || missing+=(python3)
    have pkg-config || missing+=(pkg-config)
    [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    # The independent Python implementations of our wire formats (vault-crypto, attestation
    # manifest, control commands) use Debian's python3 with these two modules.
    [ -x /usr/bin/python3 ] || missing+=(python3)
    /usr/bin/python3 -c "import cryptography" 2>/dev/null || missing+=(python3-cryptography)
    /usr/bin/python3 -c "import argon2" 2>/dev/null || missing+=(python3-argon2)
    if [ "${#missing[@]}" -gt 0 ]; then
        step "installing ${missing[*]} (Debian packages)"
        apt_install "${missing[@]}"
    fi
    ensure_moto
    ensure_dynalite
}

# moto_server: the local S3 that tests/tests/storage_s3.rs drives the real S3 store against.
# From PyPI (Debian has no moto 5), into a venv of its own so the system Python is untouched
# (PEP 668); the venv's bin/ goes on PATH for the rest of the script.
ensure_moto() {
    have moto_server && return 0
    local venv="${VETTID_MOTO_VENV:-$HOME/.cache/vettid/moto-venv}"
    if [ ! -x "$venv/bin/moto_server" ]; then
        step "installing moto_server (pip install 'moto[server]>=5,<6' into $venv)"
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
        "$venv/bin/pip" install -q 'moto[server]>=5,<6'
    fi
    export PATH="$venv/bin:$PATH"
}

# 0 if something accepts TCP connections on host:port.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1; }

# dynalite: the DynamoDB stand-in behind the enclave's trusted store (tests/src/dynamo.rs, scripts/dev),
# from the npm registry at exactly the versions scripts/lib/dynalite/package-lock.json pins (`npm ci`),
# into its own directory; reinstalled only when the lock file changes. Needs Node.js >= 20 (dynalite 4).
# Exports VETTID_DYNALITE_DIR (its node_modules is what scripts/lib/dynalite-tls.js loads).
ensure_dynalite() {
    local dir="${VETTID_DYNALITE_DIR:-$HOME/.cache/vettid/dynalite}"
    local src
    src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dynalite"
    if ! have node || ! have npm; then
        step "installing nodejs and npm (Debian packages)"
        apt_install nodejs npm
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        echo "dynalite 4 needs Node.js >= 20; this machine has $(node --version)" >&2
        return 1
    fi
    if [ ! -f "$dir/node_modules/dynalite/package.json" ] || ! cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
        step "installing dynalite (npm ci, pinned by scripts/lib/dynalite/package-lock.json, into $dir)"
        mkdir -p "$dir"
        cp "$src/package.json" "$src/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    export VETTID_DYNALITE_DIR="$dir"
}
