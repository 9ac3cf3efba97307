#!/usr/bin/env bash
# The one test command (README and CI both call it): formatting, lints, licence and advisory
# checks, then every test in the workspace. Installs the tools it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools"
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --locked
fi

# The portal's browser test drives Debian's chromium through chromium-driver (WebDriver);
# nothing is downloaded at test time.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  as_root=""
  if [ "$(id -u)" != 0 ]; then as_root="sudo"; fi
  $as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q chromium chromium-driver
fi

# The DICOM de-identification test (crates/dicom) de-identifies the DICOM files pydicom's wheel
# ships and checks every output with pydicom, an independent reader: from PyPI, pinned.
pydicom_version="3.0.2"
if ! python3 -c "import pydicom, sys; sys.exit(pydicom.__version__ != '$pydicom_version')" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "pydicom==$pydicom_version" ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      "pydicom==$pydicom_version"
fi

# The FHIR import's golden files are the FHIR specification's own R4 examples, as HL7 publishes
# them in the hl7.fhir.r4.examples package (the npm registry): pinned, installed under target/,
# not committed; the e2e test reads them from MEDLEDGER_FHIR_R4_EXAMPLES.
fhir_examples_dir="${CARGO_TARGET_DIR:-target}/fhir-r4-examples"
export MEDLEDGER_FHIR_R4_EXAMPLES="$fhir_examples_dir/node_modules/hl7.fhir.r4.examples"
if [ ! -f "$MEDLEDGER_FHIR_R4_EXAMPLES/Observation-heart-rate.json" ]; then
  mkdir -p "$fhir_examples_dir"
  npm install --prefix "$fhir_examples_dir" --no-save --no-audit --no-fund --ignore-scripts \
    hl7.fhir.r4.examples@4.0.1
fi
MEDLEDGER_FHIR_R4_EXAMPLES="$(cd "$MEDLEDGER_FHIR_R4_EXAMPLES" && pwd)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo fetch (every platform's crates, for cargo deny's offline metadata)"
# `cargo deny --offline` reads the metadata of the whole lockfile, other platforms' crates
# included; a build fetches only this platform's, so a fresh machine must fetch the rest first.
cargo fetch --locked

step "cargo deny (licences, bans, sources, advisories)"
# The advisory database: the offline snapshot beside the project when there is one (this
# workplace has no route to its home), otherwise cargo-deny fetches it.
snapshot="../shared/advisory-db"
deny_config=deny.toml
if [ -d "$snapshot" ]; then
  db_root=$(mktemp -d)
  trap 'rm -rf "$db_root"' EXIT
  db="$db_root/advisory-db-3157b0e258782691"
  mkdir -p "$db"
  cp -r "$snapshot/." "$db"
  (cd "$db" && git init -q && git add -A &&
    git -c user.email=ci@localhost -c user.name=ci commit -qm snapshot)
  deny_config="$db_root/deny.toml"
  sed "s|^# db-path = .*|db-path = \"$db_root\"|" deny.toml > "$deny_config"
  cargo deny --offline --config "$deny_config" check
else
  cargo deny --config "$deny_config" check
fi

step "tests"
# (The workspace has no doc tests; nextest runs everything else.)
cargo nextest run --workspace --locked --no-fail-fast

step "the README walk-through, as written"
# The tests above built the CLI (the e2e tests run it); the walk-through runs that binary rather
# than building another with the CLI's features alone, which cost a fresh machine 14 minutes.
test_bin="${CARGO_TARGET_DIR:-target}/debug/medledger"
if [ -x "$test_bin" ]; then
  MEDLEDGER_BIN="$(cd "$(dirname "$test_bin")" && pwd)/medledger" ./scripts/walkthrough.sh
else
  ./scripts/walkthrough.sh
fi
