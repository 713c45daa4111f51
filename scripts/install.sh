#!/usr/bin/env bash
# Installs the VettID host side on an Amazon Linux 2023 Nitro Enclaves host:
#   /usr/local/bin/{vettid,vettid-parent}                 binaries
#   /etc/systemd/system/vettid-{enclave,parent}.service   units
#   /etc/vettid/{enclave,parent}.toml                     config (from the examples, never overwritten)
#   /etc/nitro_enclaves/allocator.yaml                    rendered from /etc/vettid/enclave.toml
#   /etc/vettid/nats.creds                                fetched from SSM if missing
#   /opt/vettid/enclave/<eif>                             with --eif
#
# Usage: scripts/install.sh [--bin-dir DIR] [--eif FILE] [--root DIR] [--dry-run] [--no-ssm]
#                           [--region REGION] [--start]
#   --bin-dir DIR  where the built binaries are (default: target/release next to this script)
#   --eif FILE     also install the enclave image as the eif_path named in enclave.toml
#   --root DIR     install under DIR instead of / (tests, image builds)
#   --dry-run      with --root: write the files, but only print host-changing commands
#                  (systemctl, aws ssm) instead of running them
#   --no-ssm       never fetch the NATS credentials from SSM
#   --region R     AWS region for SSM (default: $AWS_REGION, else IMDSv2)
#   --start        restart the allocator and start both units after installing
set -euo pipefail

SSM_PARAMETER=/vettid/nitro/parent-nats-creds
# systemd from this version on understands RestartSteps=/RestartMaxDelaySec= (back-off).
SYSTEMD_BACKOFF_MIN=254

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bin_dir="$repo/target/release"
root=""
dry_run=0
use_ssm=1
region="${AWS_REGION:-}"
start=0
eif=""

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="${2:?--bin-dir needs a value}"; shift 2 ;;
        --eif) eif="${2:?--eif needs a value}"; shift 2 ;;
        --root) root="${2:?--root needs a value}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --no-ssm) use_ssm=0; shift ;;
        --region) region="${2:?--region needs a value}"; shift 2 ;;
        --start) start=1; shift ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

if [ "$dry_run" = 1 ] && [ -z "$root" ]; then
    die "--dry-run writes the files under --root DIR; give one"
fi
if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
fi
if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or use --dry-run --root DIR)"
fi

# Runs a host-changing command, or prints it in dry-run mode.
host() {
    if [ "$dry_run" = 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

for b in vettid vettid-parent; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found: build with 'cargo build --release -p vettid-cli -p vettid-parent' or pass --bin-dir"
done
for u in vettid-enclave.service vettid-parent.service enclave.toml.example parent.toml.example; do
    [ -f "$repo/systemd/$u" ] || die "$repo/systemd/$u missing"
done

# 1. Binaries and units.
install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
install -m 0755 "$bin_dir/vettid" "$bin_dir/vettid-parent" "$root/usr/local/bin/"
install -m 0644 "$repo/systemd/vettid-enclave.service" "$repo/systemd/vettid-parent.service" "$root/etc/systemd/system/"
if [ -f "$repo/docs/OPERATIONS.md" ]; then
    install -d -m 0755 "$root/usr/local/share/doc/vettid"
    install -m 0644 "$repo/docs/OPERATIONS.md" "$root/usr/local/share/doc/vettid/"
fi
say "installed binaries and units"

# 2. Configuration. World-readable: the parent runs under a DynamicUser= uid, and neither file
#    holds a secret. Existing files are the operator's and are kept.
install -d -m 0755 "$root/etc/vettid"
for c in enclave parent; do
    if [ -e "$root/etc/vettid/$c.toml" ]; then
        say "keeping existing /etc/vettid/$c.toml"
    else
        install -m 0644 "$repo/systemd/$c.toml.example" "$root/etc/vettid/$c.toml"
        say "wrote /etc/vettid/$c.toml from the example: review it"
    fi
done

# 3. The allocator reservation, from the same file the supervisor reads (one source of truth).
#    This also validates enclave.toml: a bad file stops the install here.
install -d -m 0755 "$root/etc/nitro_enclaves"
allocator_tmp="$(mktemp)"
trap 'rm -f "$allocator_tmp"' EXIT
"$bin_dir/vettid" supervise-enclave --config "$root/etc/vettid/enclave.toml" --print-allocator-yaml > "$allocator_tmp" \
    || die "/etc/vettid/enclave.toml is invalid (see above)"
allocator_changed=1
if [ -f "$root/etc/nitro_enclaves/allocator.yaml" ] && cmp -s "$allocator_tmp" "$root/etc/nitro_enclaves/allocator.yaml"; then
    allocator_changed=0
fi
install -m 0644 "$allocator_tmp" "$root/etc/nitro_enclaves/allocator.yaml"
say "wrote /etc/nitro_enclaves/allocator.yaml ($(grep -E '^(memory_mib|cpu_count):' "$allocator_tmp" | tr '\n' ' '))"

# 4. The enclave image, at the path enclave.toml names.
if [ -n "$eif" ]; then
    [ -f "$eif" ] || die "--eif $eif: no such file"
    eif_path="$(sed -n 's/^[[:space:]]*eif_path[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' "$root/etc/vettid/enclave.toml" | head -n1)"
    [ -n "$eif_path" ] || die "cannot find eif_path in /etc/vettid/enclave.toml"
    install -d -m 0755 "$root$(dirname "$eif_path")"
    install -m 0644 "$eif" "$root$eif_path"
    say "installed the EIF as $eif_path"
fi

# 5. NATS credentials: root-only on disk; systemd hands the parent a private copy
#    (LoadCredential=), so the parent's uid never needs read access to /etc/vettid/nats.creds.
creds="$root/etc/vettid/nats.creds"
if [ -s "$creds" ]; then
    chmod 0600 "$creds"
    say "keeping existing /etc/vettid/nats.creds"
elif [ "$use_ssm" = 0 ]; then
    say "WARNING: /etc/vettid/nats.creds is missing and --no-ssm was given; vettid-parent will not start without it"
elif [ "$dry_run" = 1 ]; then
    echo "would run: aws ssm get-parameter --name $SSM_PARAMETER --with-decryption --query Parameter.Value --output text > /etc/vettid/nats.creds"
else
    command -v aws >/dev/null || die "/etc/vettid/nats.creds is missing and the aws CLI is not installed (dnf install awscli-2, or place the file yourself)"
    if [ -z "$region" ]; then
        token="$(curl -fsS -m 2 -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')" \
            || die "no --region/AWS_REGION and IMDSv2 is unreachable"
        region="$(curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/placement/region)"
    fi
    tmp_creds="$(umask 077 && mktemp "$root/etc/vettid/.nats.creds.XXXXXX")"
    if aws ssm get-parameter --region "$region" --name "$SSM_PARAMETER" --with-decryption \
            --query Parameter.Value --output text > "$tmp_creds" && [ -s "$tmp_creds" ]; then
        chmod 0600 "$tmp_creds"
        mv "$tmp_creds" "$creds"
        say "fetched /etc/vettid/nats.creds from SSM $SSM_PARAMETER ($region)"
    else
        rm -f "$tmp_creds"
        die "could not fetch $SSM_PARAMETER from SSM ($region)"
    fi
fi

# 6. Restart back-off where systemd supports it (Amazon Linux 2023 and Debian 12 ship 252: no).
systemd_version="$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
if [ -n "$systemd_version" ] && [ "$systemd_version" -ge "$SYSTEMD_BACKOFF_MIN" ]; then
    install -d -m 0755 "$root/etc/systemd/system/vettid-enclave.service.d"
    printf '[Service]\n# Restart delay grows from RestartSec=5 to 5 min over 5 restarts.\nRestartSteps=5\nRestartMaxDelaySec=300\n' \
        > "$root/etc/systemd/system/vettid-enclave.service.d/10-backoff.conf"
    chmod 0644 "$root/etc/systemd/system/vettid-enclave.service.d/10-backoff.conf"
    say "systemd $systemd_version: enabled restart back-off (10-backoff.conf)"
else
    say "systemd ${systemd_version:-unknown} < $SYSTEMD_BACKOFF_MIN: restarts every RestartSec=5 (no back-off keys)"
fi

# 7. Tell systemd.
host systemctl daemon-reload
host systemctl enable nitro-enclaves-allocator.service vettid-enclave.service vettid-parent.service
if [ "$dry_run" = 0 ] && ! command -v nitro-cli >/dev/null; then
    say "WARNING: nitro-cli not found: dnf install aws-nitro-enclaves-cli"
fi
if [ "$start" = 1 ]; then
    if [ "$allocator_changed" = 1 ]; then
        host systemctl restart nitro-enclaves-allocator.service
    fi
    host systemctl restart vettid-enclave.service
    host systemctl restart vettid-parent.service
else
    if [ "$allocator_changed" = 1 ]; then
        say "allocator.yaml changed: sudo systemctl restart nitro-enclaves-allocator.service"
    fi
    say "next: sudo systemctl start vettid-enclave vettid-parent"
fi
say "done${root:+ (under $root)}"
