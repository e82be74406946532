#!/usr/bin/env bash
# Record a small compatibility ledger with an installed bvisor, through its commands only
# (the commands are the interface every released version shares).
#
#   tests/compat/record.sh BIN_DIR EXAMPLES_DIR OUT_DIR [EXTRA_SPECS_DIR]
#
# BIN_DIR holds that version's bvisor, bvisor-ledger and bvisor-replay; EXAMPLES_DIR its
# examples/. OUT_DIR receives data.mdb (lock.mdb is left out: LMDB recreates it).
# Examples a version does not ship are skipped, so the runs of an older recording stay what
# they were; EXTRA_SPECS_DIR (e.g. tests/compat/specs/v2) adds specs for features that no
# example shows, each run once in name order.
set -euo pipefail
bin=$1 examples=$2 out=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ledger="$work/ledger"
mkdir -p "$work/cwd"
cd "$work/cwd"
run() { "$bin/bvisor" run --ledger "$ledger" "$@" >/dev/null 2>&1 || true; }
run -- /bin/sh -c 'echo compatibility; echo to-stderr >&2'
run -- /bin/sh -c 'exit 3'
run --spec "$examples/deny-new-tasks.toml"
run --spec "$examples/no-network.toml"
run --spec "$examples/allow-descendants-atomic-kill.toml"
run --spec "$examples/budgeted-timeout.toml"
for refused in "$examples"/refused-*.toml; do run --spec "$refused"; done
for example in network-allow-list denied-attempts; do
    if [ -f "$examples/$example.toml" ]; then run --spec "$examples/$example.toml"; fi
done
if [ -n "${4:-}" ]; then for extra in "$4"/*.toml; do run --spec "$extra"; done; fi
"$bin/bvisor-ledger" append --ledger "$ledger" --kind note.external --data '{"ticket": 42}' >/dev/null
"$bin/bvisor-ledger" verify --ledger "$ledger"
"$bin/bvisor-replay" --ledger "$ledger"
mkdir -p "$out"
cp "$ledger/data.mdb" "$out/data.mdb"
"$bin/bvisor-ledger" head --ledger "$ledger" > "$out/HEAD"
