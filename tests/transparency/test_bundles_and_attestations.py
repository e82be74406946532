"""Proof bundles checked offline, and in-toto attestations checked by a stock DSSE verifier.

``bvisor-ledger prove`` writes a bundle; ``bvisor-replay --bundle --pub`` must verify it
with no ledger at all (the ledger is deleted first), and refuse every way of bending it,
naming the field. ``bvisor-ledger attest`` writes a DSSE envelope that securesystemslib's
verifier accepts given only the public key.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from bvisor.contract import ExitStatus, Outcome
from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger
from bvisor.ledger.dsse import pae
from bvisor.ledger.keys import load_verifier
from bvisor.ledger.record import decode_record
from tests.replay.helpers import FakeRun, record_synthetic
from tests.transparency.kit import call, keypair

HELLO = FakeRun(outcome=Outcome.COMPLETED, exit=ExitStatus.exited(0), stdout=b"hello\n")


@pytest.fixture
def proven(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    _signer, key, pub = keypair(tmp_path / "keys")
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as handle:
        record_synthetic(handle, fake=FakeRun())
        run = record_synthetic(handle, fake=HELLO)
        handle.append("note.external", {"after": "the run"}, run)
    assert (
        call(capsys, ledger_main, "checkpoint", "--ledger", str(ledger), "--key", str(key))[0] == 0
    )
    bundle = tmp_path / "run.bundle"
    code, _, _ = call(
        capsys, ledger_main, "prove", run.hex()[:12], "--ledger", str(ledger), "--out", str(bundle)
    )
    assert code == 0
    return {"ledger": ledger, "key": key, "pub": pub, "run": run, "bundle": bundle, "tmp": tmp_path}


def test_a_bundle_verifies_without_the_ledger(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(proven["ledger"])
    code, out, _ = call(
        capsys,
        replay_main,
        "--bundle",
        str(proven["bundle"]),
        "--pub",
        str(proven["pub"]),
        "--json",
    )
    document = json.loads(out)
    assert code == 0 and document["ok"] is True
    (run,) = document["runs"]
    assert run["run_id"] == proven["run"].hex() and run["verdict"] == "verified"
    chain = run["checks"][0]
    assert (
        chain["name"] == "chain" and "proven included in the signed checkpoint" in chain["detail"]
    )
    assert [c["name"] for c in run["checks"]][1:] == [
        "grammar", "h_p", "h_a", "h_l", "plan_id", "transcript", "streams", "report", "seal",
    ]  # fmt: skip


def _bent(bundle: Path, change: Any) -> Path:
    document = json.loads(bundle.read_text())
    change(document)
    target = bundle.with_name("bent.bundle")
    target.write_text(json.dumps(document))
    return target


def _flip_record(doc: dict[str, Any]) -> None:
    record = bytearray(bytes.fromhex(doc["events"][-1]["record"]))
    record[-3] ^= 0x01
    doc["events"][-1]["record"] = record.hex()


def _flip_proof(doc: dict[str, Any]) -> None:
    path = doc["events"][0]["inclusion"]
    path[0] = base64.b64encode(bytes(32)).decode()


def _flip_checkpoint(doc: dict[str, Any]) -> None:
    lines = doc["checkpoint"].split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()  # claim another root
    doc["checkpoint"] = "\n".join(lines)


def _other_run(doc: dict[str, Any]) -> None:
    doc["run_id"] = "ab" * 32


def _drop_seal(doc: dict[str, Any]) -> None:
    doc["events"] = [e for e in doc["events"] if e is not doc["events"][-2]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_flip_record, "is not in the signed tree"),
        (_flip_proof, "events[0]: event"),
        (_flip_checkpoint, "does not verify"),
        (_other_run, "belongs to another run"),
        (lambda d: d.pop("events"), "missing fields ['events']"),
        (lambda d: d.update(ledger_id="00" * 16), "is not ledger"),
        (lambda d: d["events"].reverse(), "seqs must increase"),
    ],
)
def test_a_bent_bundle_is_refused_naming_the_field(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str], change: Any, message: str
) -> None:
    bent = _bent(proven["bundle"], change)
    code, out, _ = call(capsys, replay_main, "--bundle", str(bent), "--pub", str(proven["pub"]))
    assert code == 1 and message in out and "Traceback" not in out


def test_a_bundle_missing_the_report_is_never_verified(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(proven["bundle"].read_text())
    kinds = [decode_record(bytes.fromhex(e["record"])).event.kind for e in document["events"]]
    sealed = kinds.index("report.sealed")
    document["events"] = document["events"][:sealed]  # the report (and the note) left out
    bent = proven["bundle"].with_name("short.bundle")
    bent.write_text(json.dumps(document))
    code, out, _ = call(capsys, replay_main, "--bundle", str(bent), "--pub", str(proven["pub"]))
    assert code == 1 and "verified" not in out.split("\n")[1]


def test_a_bundle_needs_the_trusted_key(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _other, _key, other_pub = keypair(proven["tmp"] / "other", "other.example/key")
    code, out, _ = call(
        capsys, replay_main, "--bundle", str(proven["bundle"]), "--pub", str(other_pub)
    )
    assert code == 1 and "no signature by a trusted key" in out
    code, _, err = call(capsys, replay_main, "--bundle", str(proven["bundle"]))
    assert code == 2 and "--pub" in err


def test_prove_refuses_a_run_not_yet_covered(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(proven["ledger"]) as handle:
        later = record_synthetic(handle, fake=HELLO)
    code, _, err = call(
        capsys, ledger_main, "prove", later.hex(), "--ledger", str(proven["ledger"])
    )
    assert code == 1 and "not yet covered by a signed checkpoint" in err


def test_the_attestation_verifies_with_a_stock_dsse_verifier(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = call(
        capsys,
        ledger_main,
        "attest",
        proven["run"].hex(),
        "--ledger",
        str(proven["ledger"]),
        "--key",
        str(proven["key"]),
    )
    assert code == 0
    envelope = json.loads(out)
    verifier = load_verifier(proven["pub"])
    key = SSlibKey(
        keyid=envelope["signatures"][0]["keyid"],
        keytype="ed25519",
        scheme="ed25519",
        keyval={"public": verifier.public.hex()},
    )
    accepted = Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)
    assert list(accepted) == [key.keyid]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {
        "stdout": hashlib.sha256(b"hello\n").hexdigest(),
        "stderr": hashlib.sha256(b"").hexdigest(),
    }
    predicate = statement["predicate"]
    assert predicate["run_id"] == proven["run"].hex() and predicate["outcome"] == "completed"
    assert predicate["report"]["body"]["outcome"] == "completed"
    # a changed statement no longer verifies
    tampered = copy.deepcopy(envelope)
    statement["predicate"]["outcome"] = "failed"
    tampered["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([key], 1)
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"  # the DSSE spec's vector
    )


def test_attest_refuses_a_run_that_does_not_verify(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(proven["ledger"]) as handle:
        pending = record_synthetic(handle, fake=HELLO, stop_after_admission=True)
    call(
        capsys,
        ledger_main,
        "checkpoint",
        "--ledger",
        str(proven["ledger"]),
        "--key",
        str(proven["key"]),
    )
    code, out, err = call(
        capsys,
        ledger_main,
        "attest",
        pending.hex(),
        "--ledger",
        str(proven["ledger"]),
        "--key",
        str(proven["key"]),
    )
    assert code == 1 and out == "" and "incomplete, not attested" in err


def test_attest_refuses_a_run_made_with_a_test_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a run made with a mechanism skipped on purpose (a test hook)
    replays "verified (test hook)", and attest signed an in-toto statement of it whose
    predicate said only "completed": a consumer of the statement could not tell. A real
    run with skip_seccomp is refused; the same run without the hook is attested."""
    from bvisor.front.api import run_confined
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.locate import default_launcher_path
    from tests.replay.helpers import base_spec

    _signer, key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    hooked = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), {"skip_seccomp"})
    runs = [
        run_confined(base_spec(["-c", "true"]), ledger=path, backend=backend).body.attempt_id
        for backend in (hooked, LinuxBackend())
    ]
    assert call(capsys, ledger_main, "checkpoint", "--ledger", str(path), "--key", str(key))[0] == 0
    said = [
        call(capsys, ledger_main, "attest", run.hex(), "--ledger", str(path), "--key", str(key))
        for run in runs
    ]
    (code, out, err), (honest, statement, _) = said
    assert code == 1 and out == "" and "test hooks (skip_seccomp)" in err, err
    assert honest == 0 and json.loads(statement)["payloadType"], statement


def test_out_never_writes_through_a_link_another_user_planted(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` in a directory another user may write (``/tmp``): found by attack, the
    bundle was first written to ``.<name>.<pid>.tmp`` by a plain open, so that user's
    links at the coming pids had root's ``prove --out /tmp/b.json`` overwrite the file
    they pointed at (``/etc/shadow`` in the attack) and leave the link as the output.
    Links are planted here at the pid names of this process and of the next 64, and at
    the output itself; the oracle is the victim's bytes and what lies at the output."""
    shared = proven["tmp"] / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is: the links' owner is no guide there
    victim = proven["tmp"] / "victim"
    victim.write_bytes(b"precious\n")
    out = shared / "b.json"
    for pid in range(os.getpid(), os.getpid() + 64):
        (shared / f".{out.name}.{pid}.tmp").symlink_to(victim)
    out.symlink_to(victim)
    code, _, err = call(
        capsys, ledger_main, "prove", proven["run"].hex()[:12], "--ledger",
        str(proven["ledger"]), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert victim.read_bytes() == b"precious\n"
    assert not out.is_symlink() and json.loads(out.read_text())["run_id"] == proven["run"].hex()
    left = sorted(p.name for p in shared.iterdir() if not p.is_symlink())
    assert left == ["b.json"], left


def test_out_writes_through_what_the_caller_named_and_never_replaces_it(
    proven: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: root's ``prove --out /dev/null`` renamed the bundle over the host's
    /dev/null, a regular file in place of the device from then on (and ``/dev/stdout`` is
    a link that would have gone the same way). A FIFO, a link to it in a directory only
    its owner may write, and (as root) a null device made here are each written through
    and left what they were; ``--out .`` is a clear usage error. The oracle is what lies at
    each name afterwards and what a reader of the FIFO received."""
    import stat
    import threading

    place = proven["tmp"] / "named"
    place.mkdir(mode=0o755)
    fifo = place / "fifo"
    os.mkfifo(fifo)
    link = place / "link"
    link.symlink_to(fifo)
    targets = [fifo, link]
    if os.geteuid() == 0:
        device = place / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(device)
    for target in targets:
        through_fifo = target in (fifo, link)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda got=received: got.append(fifo.read_bytes()))
        if through_fifo:
            reader.start()
        code, _, err = call(
            capsys, ledger_main, "prove", proven["run"].hex()[:12], "--ledger",
            str(proven["ledger"]), "--out", str(target),
        )  # fmt: skip
        if through_fifo:
            reader.join(5)
            if reader.is_alive():  # nothing was written through (the old code): let it go
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                reader.join(5)
        assert code == 0, err
        if through_fifo:
            assert received and json.loads(received[0])["run_id"] == proven["run"].hex()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(place / "null").st_mode)
    assert sorted(p.name for p in place.iterdir()) == sorted(t.name for t in targets)
    shared = proven["tmp"] / "shared-fifo"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp: what lies there is replaced, never opened
    planted = shared / "b.json"
    os.mkfifo(planted)

    def stuck(_signum: int, _frame: object) -> None:
        raise AssertionError("--out opened a FIFO in a shared directory")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(10)
    try:
        code, _, err = call(
            capsys, ledger_main, "prove", proven["run"].hex()[:12], "--ledger",
            str(proven["ledger"]), "--out", str(planted),
        )  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 0 and json.loads(planted.read_text())["run_id"] == proven["run"].hex()
    for name in (".", "/", ""):
        code, _, err = call(
            capsys, ledger_main, "prove", proven["run"].hex()[:12], "--ledger",
            str(proven["ledger"]), "--out", name,
        )  # fmt: skip
        assert code == 2 and "give a file name" in err, err
