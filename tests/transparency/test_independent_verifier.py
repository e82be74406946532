"""An independent verifier: checks what the commands wrote, from docs/FORMATS.md alone.

This module imports nothing of bvisor — only the standard library, ``cryptography``,
``cbor2`` and ``blake3`` (and pytest to run it). It drives the installed commands in
subprocesses (a real ``bvisor run`` with a key, then ``checkpoint``, ``append``,
``consistency``, ``prove``, ``attest``, ``export``) and re-derives from their files: the
signed checkpoints (C2SP signed note, Ed25519, key id), the Merkle root over the exported
records (RFC 6962), the BLAKE3 hash chain and payload hashes, every inclusion proof in the
bundle and the attestation, the consistency proof (RFC 9162), and the DSSE envelope of the
in-toto statement, down to the report seal inside the ``report.sealed`` record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


# -- what FORMATS.md specifies, written out again ------------------------------------------


def _leaf(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def _inclusion_ok(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def _consistency_ok(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    if m == n:
        return not proof and old == new
    if m == 0:
        return not proof
    path = ([old] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old and sr == new


def _vkey(text: str) -> tuple[str, bytes, bytes]:
    name, key_id, data = text.strip().split("+", 2)
    raw = base64.b64decode(data)
    assert raw[0] == 0x01 and len(raw) == 33
    computed = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert computed.hex() == key_id
    return name, computed, raw[1:]


def _open_note(note: str, name: str, key_id: bytes, public: bytes) -> list[str]:
    """The checkpoint's lines, after verifying the signature line by (name, key id)."""
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    verified = False
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        who, data = line[2:].split(" ")
        packed = base64.b64decode(data)
        if who == name and packed[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(public).verify(packed[4:], text.encode())
            verified = True
    assert verified, "no signature by the trusted key"
    return text.splitlines()


def _blake(context: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=context).digest()


def _checkpoint(lines: list[str]) -> tuple[str, int, bytes, str | None]:
    head = next((line for line in lines[3:] if line.startswith("bvisor-head ")), None)
    return lines[0], int(lines[1]), base64.b64decode(lines[2]), head


# -- the test ----------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Any]:
    work, store = tmp_path / "work", tmp_path / "store"
    work.mkdir()
    store.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("BVISOR_LEDGER", "BVISOR_KEY")}
    env["XDG_DATA_HOME"] = str(store / "data")
    ledger, keys = str(store / "ledger"), store / "keys"
    key = str(keys / "checkpoint.key")

    def cli(*args: str) -> str:
        return _cli(*args, cwd=work, env=env)

    pub = cli(
        "bvisor.front.cli.ledger_cmd", "keygen", "--out", str(keys), "--name", "indep.example/key"
    )
    report = json.loads(
        cli(
            "bvisor.front.cli.main",
            "run",
            "--ledger",
            ledger,
            "--key",
            key,
            "--json",
            "--",
            "/bin/sh",
            "-c",
            "echo hello",
        )
    )
    run = report["report"]["attempt_id"]
    first = cli("bvisor.front.cli.ledger_cmd", "checkpoint", "--ledger", ledger, "--key", key)
    cli("bvisor.front.cli.ledger_cmd", "append", "--ledger", ledger, "--kind", "note.external",
        "--data", '{"later": true}')  # fmt: skip
    second = cli("bvisor.front.cli.ledger_cmd", "checkpoint", "--ledger", ledger, "--key", key)
    (tmp_path / "first").write_text(first)
    request = cli(
        "bvisor.front.cli.ledger_cmd", "consistency", str(tmp_path / "first"), "--ledger", ledger
    )
    bundle = cli("bvisor.front.cli.ledger_cmd", "prove", run, "--ledger", ledger)
    envelope = cli("bvisor.front.cli.ledger_cmd", "attest", run, "--ledger", ledger, "--key", key)
    export = cli("bvisor.front.cli.ledger_cmd", "export", "--ledger", ledger)
    return {
        "pub": pub,
        "run": run,
        "first": first,
        "second": second,
        "request": request,
        "bundle": json.loads(bundle),
        "envelope": json.loads(envelope),
        "export": [json.loads(line) for line in export.splitlines()],
    }


def test_an_independent_verifier_accepts_everything_the_commands_wrote(
    written: dict[str, Any],
) -> None:
    name, key_id, public = _vkey(written["pub"])

    # the checkpoints: signed by the key, over the exported records
    origin, size2, root2, head2 = _checkpoint(_open_note(written["second"], name, key_id, public))
    _, size1, root1, _head1 = _checkpoint(_open_note(written["first"], name, key_id, public))
    records = [bytes.fromhex(line["record"]) for line in written["export"]]
    ledger_id = bytes.fromhex(written["export"][0]["ledger_id"])
    assert origin == "bvisor-ledger/" + ledger_id.hex()
    assert size2 == len(records) and size1 < size2
    leaves = [_leaf(r) for r in records]
    assert _mth(leaves) == root2 and _mth(leaves[:size1]) == root1

    # the hash chain, from the genesis hash of the ledger id to the head the checkpoint names
    prev = _blake("bvisor.ledger.genesis.v1", ledger_id)
    for seq, record in enumerate(records):
        items = cbor2.loads(record)
        assert cbor2.dumps(items, canonical=True) == record  # the one canonical encoding
        version, number, prev_hash, _time, _kind, _run, payload_hash, payload = items
        assert (version, number, prev_hash) == (1, seq, prev)
        assert payload_hash == _blake(
            "bvisor.ledger.event.v1", cbor2.dumps(["payload", payload], canonical=True)
        )
        prev = _blake("bvisor.ledger.event.v1", cbor2.dumps(items[:7], canonical=True))
    assert head2 == f"bvisor-head {size2 - 1} {prev.hex()}"

    # the consistency proof, in the tlog-witness request form
    lines = written["request"].split("\n")
    assert lines[0] == f"old {size1}"
    blank = lines.index("")
    proof = [base64.b64decode(line) for line in lines[1:blank]]
    assert _consistency_ok(size1, size2, root1, root2, proof)
    assert not _consistency_ok(size1, size2, _node(root1, root1), root2, proof)
    assert "\n".join(lines[blank + 1 :]) == written["second"]

    # the bundle: each record's inclusion under the signed root of its checkpoint
    bundle = written["bundle"]
    assert bundle["format"] == "bvisor.proof-bundle.v1" and bundle["run_id"] == written["run"]
    _, bsize, broot, _ = _checkpoint(_open_note(bundle["checkpoint"], name, key_id, public))
    kinds = []
    for item in bundle["events"]:
        record = bytes.fromhex(item["record"])
        path = [base64.b64decode(h) for h in item["inclusion"]]
        assert _inclusion_ok(_leaf(record), item["seq"], bsize, path, broot)
        assert not _inclusion_ok(_leaf(record + b"x"), item["seq"], bsize, path, broot)
        decoded = cbor2.loads(record)
        assert decoded[1] == item["seq"] and decoded[5].hex() == written["run"]
        kinds.append(decoded[4])
    assert kinds[0] == "plan.admitted" and kinds[-1] == "report.sealed"

    # the attestation: DSSE over the in-toto statement, and the report inside the ledger
    envelope = written["envelope"]
    body = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
    (signature,) = envelope["signatures"]
    Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature["sig"]), pae)
    statement = json.loads(body)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    digests = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert digests["stdout"] == hashlib.sha256(b"hello\n").hexdigest()
    predicate = statement["predicate"]
    inclusion = predicate["inclusion"]
    _, asize, aroot, _ = _checkpoint(_open_note(inclusion["checkpoint"], name, key_id, public))
    for item in inclusion["events"]:
        path = [base64.b64decode(h) for h in item["proof"]]
        assert _inclusion_ok(bytes.fromhex(item["leaf_hash"]), item["seq"], asize, path, aroot)
    sealed = bytes.fromhex(inclusion["sealed_record"])
    assert _leaf(sealed).hex() == inclusion["events"][-1]["leaf_hash"]
    payload = cbor2.loads(sealed)[7]
    assert payload["seal"].hex() == predicate["report"]["seal"]
    assert payload["seal"] == _blake(
        "bvisor.report.v1", cbor2.dumps(payload["body"], canonical=True)
    )
    assert payload["body"]["outcome"] == predicate["outcome"] == "completed"
