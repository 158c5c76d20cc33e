#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need (a real syslog daemon
# from Debian), then: formatting, lints, every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# syslog-ng-mod-http: the HTTP destination e2e_bench's same-machine peer uses (its config test).
if ! command -v syslog-ng >/dev/null 2>&1 || ! ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing syslog-ng and its HTTP module (integration-test peer)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends syslog-ng-core syslog-ng-mod-http >/dev/null
  else
    echo "== syslog-ng (or its HTTP module) not installed and cannot install it here: its peer tests will skip" >&2
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
