"""Signed notes and keys: the golang.org/x/mod/sumdb/note vectors, C2SP's verification
rules, checkpoint bodies, and key files that refuse to be unsafe."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from bvisor.ledger.checkpoint import checkpoint_text, parse_checkpoint
from bvisor.ledger.keys import KeyFileError, load_signer, load_verifier, write_keypair
from bvisor.ledger.note import (
    ALG_COSIGNATURE,
    NoteError,
    generate_signer,
    key_id,
    parse_note,
    parse_signer,
    parse_verifier,
    sign_note,
    verify_note,
)

# Go's sumdb note package tests (golang.org/x/mod/sumdb/note/note_test.go).
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIGNED = (
    TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)


def test_the_go_signer_and_verifier_vectors() -> None:
    signer = parse_signer(SKEY)
    assert signer.verifier.text() == VKEY
    assert sign_note(TEXT, signer) == SIGNED  # Ed25519 is deterministic: byte for byte
    assert verify_note(parse_note(SIGNED), [parse_verifier(VKEY)]) == [parse_verifier(VKEY)]
    assert key_id("PeterNeumann", 1, parse_verifier(VKEY).public).hex() == "c74f20a3"


def test_unknown_signatures_are_ignored_and_a_note_needs_a_trusted_one() -> None:
    both = parse_note(SIGNED + ENOCH_SIG)
    peter, enoch = parse_verifier(VKEY), parse_verifier(ENOCH)
    assert verify_note(both, [peter]) == [peter]
    assert verify_note(both, [peter, enoch]) == [peter, enoch]
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        verify_note(both, [])
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        verify_note(parse_note(TEXT + "\n" + ENOCH_SIG), [peter])


def test_a_changed_note_or_signature_is_refused() -> None:
    peter = parse_verifier(VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(parse_note(SIGNED.replace("problem,", "problem;")), [peter])
    line = SIGNED.splitlines()[-1]
    bent = SIGNED.replace(line, line[:30] + ("A" if line[30] != "A" else "B") + line[31:])
    with pytest.raises(NoteError):
        verify_note(parse_note(bent), [peter])


@pytest.mark.parametrize(
    "text",
    [
        TEXT,  # no signatures
        TEXT + "\n",
        "\x01" + SIGNED,
        TEXT + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX=\n",
        SIGNED + "Unexpected line.\n",
    ],
)
def test_malformed_notes_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_note(text)


@pytest.mark.parametrize(
    "key",
    [
        VKEY[:-1],
        VKEY.replace("c74f20a3", "c74f20a4"),  # key id that does not match the key
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown type
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ],
)
def test_malformed_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(NoteError):
        parse_verifier(key)


def test_checkpoint_bodies_round_trip_and_bad_ones_name_the_line() -> None:
    signer = generate_signer("example.com/log")
    text = checkpoint_text("bvisor-ledger/" + "ab" * 16, 3, b"\x07" * 32, b"\x08" * 32)
    signed = parse_checkpoint(sign_note(text, signer))
    cp = signed.checkpoint
    assert (cp.size, cp.root, cp.head_hash, cp.ledger_id()) == (
        3,
        b"\x07" * 32,
        b"\x08" * 32,
        b"\xab" * 16,
    )
    assert signed.verified_by([signer.verifier]) == [signer.verifier]
    for body, match in [
        ("o\n01\nAAAA\n", "tree size"),
        ("o\n1\nAAAA\n", "root hash"),
        ("o\n1\n" + "A" * 43 + "=\nbvisor-head 5 00\n", "bvisor-head"),
        ("o o\n1\n" + "A" * 43 + "=\n", "origin"),
    ]:
        with pytest.raises(NoteError, match=match):
            parse_checkpoint(sign_note(body, signer))


def test_key_files_are_private_never_overwritten_and_unsafe_ones_refused(tmp_path: Path) -> None:
    os.umask(0o022)
    signer, pub = write_keypair(tmp_path / "keys" / "checkpoint.key", "host/bvisor-ledger")
    key = tmp_path / "keys" / "checkpoint.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert pub == tmp_path / "keys" / "checkpoint.pub"
    assert load_signer(key) == signer and load_verifier(pub) == signer.verifier
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_keypair(key, "host/other")
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(key)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signer(tmp_path)
    witness, _ = write_keypair(tmp_path / "w" / "witness.key", "w.example/w", ALG_COSIGNATURE)
    assert base64.b64decode(witness.verifier.text().split("+", 2)[2])[0] == 0x04
    with pytest.raises(KeyFileError):
        load_signer(tmp_path / "w" / "witness.key")  # not a checkpoint signing key
