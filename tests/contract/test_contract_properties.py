"""Property tests: any valid spec survives value, bytes and file round trips unchanged,
and reordering its parts never changes its bytes or requirement keys."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetDimension,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    CommitArtifact,
    Durability,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    ExposePath,
    FdsNone,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    ListOutputs,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    ProcessWorkload,
    SecretLease,
    SpawnPolicy,
    StdStreams,
    TempRoot,
    requirements_of,
)
from bvisor.front.specfile import dump_spec_json, dump_spec_toml, parse_spec_text

_name = st.text(st.characters(codec="utf-8", exclude_characters="\x00="), min_size=1, max_size=8)
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_segment = st.from_regex(r"[a-z0-9_]{1,6}", fullmatch=True)
_abs_path = st.lists(_segment, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
_host = st.from_regex(r"[a-z]{1,6}\.[a-z]{2,3}", fullmatch=True)
_endpoint = st.builds(lambda h, p: f"{h}:{p}", _host, st.integers(1, 65535))


@st.composite
def env_policies(draw: st.DrawFn) -> EnvPolicy:
    names = draw(st.lists(_name, unique=True, max_size=5))
    values = [draw(st.one_of(_text.map(EnvLiteral), _name.map(SecretLease))) for _ in names]
    return EnvPolicy.exact(tuple(EnvEntry(n, v) for n, v in zip(names, values, strict=True)))


@st.composite
def specs(draw: st.DrawFn) -> BoundarySpec:
    caps: list[object] = []
    roots = draw(st.lists(_abs_path, unique=True, min_size=0, max_size=4))
    if roots:
        split = draw(st.integers(0, len(roots)))
        if roots[:split]:
            caps.append(Filesystem(FsAccess.READ, tuple(roots[:split]), draw(st.booleans())))
        if roots[split:]:
            caps.append(Filesystem(FsAccess.READ_WRITE, tuple(roots[split:])))
    if draw(st.booleans()):
        allow = st.lists(_endpoint, unique=True, min_size=1, max_size=3)
        policy = draw(
            st.one_of(st.just(NetworkDenyAll()), allow.map(lambda e: NetworkAllowList(tuple(e))))
        )
        caps.append(Network(policy))
    if draw(st.booleans()):
        caps.append(ChildSpawn(draw(st.sampled_from(SpawnPolicy))))
    if draw(st.booleans()):
        caps.append(Environment(draw(env_policies())))
    if draw(st.booleans()):
        fds = st.lists(st.integers(3, 1000), unique=True, min_size=1, max_size=4)
        policy2 = draw(st.one_of(st.just(FdsNone()), fds.map(lambda f: FdsOnly(tuple(f)))))
        caps.append(InheritedFds(policy2))
    controls: list[object] = [LaunchWorkload()]
    optional = [
        CaptureStreams(StdStreams(draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))),
        TempRoot(),
        ExposePath(draw(_abs_path), "/mnt/in", draw(st.sampled_from(FsAccess))),
        CommitArtifact(draw(st.sampled_from(Durability))),
        Kill(KillTarget.RUN_TREE, draw(st.sampled_from(KillGuarantee))),
        ListOutputs(),
    ]
    controls += [c for c in optional if draw(st.booleans())]
    budgets = {
        d: Budget(
            draw(st.integers(0, 1 << 40)), draw(st.sampled_from(MinGuarantee)), draw(st.booleans())
        )
        for d in BudgetDimension
        if draw(st.booleans())
    }
    claims = draw(st.frozensets(st.sampled_from(EvidenceClaim)))
    perm = draw(st.permutations(caps))
    return BoundarySpec(
        ProcessWorkload("/bin/" + draw(_segment), tuple(draw(st.lists(_text, max_size=3)))),
        tuple(perm),  # type: ignore[arg-type]
        tuple(draw(st.permutations(controls))),  # type: ignore[arg-type]
        BudgetRequirements.from_items(budgets),
        EvidenceRequirements(claims),
    )


@settings(max_examples=60, deadline=None)
@given(specs())
def test_spec_round_trips_through_value_bytes_and_files(spec: BoundarySpec) -> None:
    data = spec.encode()
    assert BoundarySpec.from_value(canonical.decode(data)) == spec
    assert parse_spec_text(dump_spec_toml(spec), "toml") == spec
    assert parse_spec_text(dump_spec_json(spec), "json") == spec


@settings(max_examples=60, deadline=None)
@given(specs(), st.randoms(use_true_random=False))
def test_reordering_never_changes_bytes_or_keys(spec: BoundarySpec, rng: object) -> None:
    caps, controls = list(spec.capabilities), list(spec.controls)
    rng.shuffle(caps)  # type: ignore[attr-defined]
    rng.shuffle(controls)  # type: ignore[attr-defined]
    shuffled = BoundarySpec(
        spec.workload, tuple(caps), tuple(controls), spec.budgets, spec.evidence
    )
    assert shuffled.encode() == spec.encode()
    assert [r.key() for r in requirements_of(shuffled)] == [r.key() for r in requirements_of(spec)]
    keys = [r.key() for r in requirements_of(spec)]
    assert len(keys) == len(set(keys)) == len(spec.capabilities) + len(spec.controls)


def test_contract_imports_nothing_outside_its_layer() -> None:
    code = (
        "import sys, bvisor.contract, bvisor.front.specfile\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'lmdb', 'cffi'} "
        "or m.split('.')[:2] in (['bvisor', n] for n in "
        "('planner', 'launcher', 'ledger', 'replay')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
