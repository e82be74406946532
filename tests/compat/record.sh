#!/usr/bin/env bash
# Record a small compatibility ledger with an installed bvisor, through its commands only
# (the commands are the interface every released version shares).
#
#   tests/compat/record.sh BIN_DIR EXAMPLES_DIR OUT_DIR
#
# BIN_DIR holds that version's bvisor, bvisor-ledger and bvisor-replay; EXAMPLES_DIR its
# examples/. OUT_DIR receives data.mdb (lock.mdb is left out: LMDB recreates it).
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
"$bin/bvisor-ledger" append --ledger "$ledger" --kind note.external --data '{"ticket": 42}' >/dev/null
"$bin/bvisor-ledger" verify --ledger "$ledger"
"$bin/bvisor-replay" --ledger "$ledger"
mkdir -p "$out"
cp "$ledger/data.mdb" "$out/data.mdb"
"$bin/bvisor-ledger" head --ledger "$ledger" > "$out/HEAD"
