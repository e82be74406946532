"""Spec files: TOML/JSON shape, error paths, canonical round trips, examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import (
    Budget,
    ChildSpawn,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    MinGuarantee,
    Network,
    NetworkAllowList,
    ProcessWorkload,
    SecretLease,
    SpawnPolicy,
    requirements_of,
)
from bvisor.front.specfile import (
    SpecFileError,
    dump_spec_json,
    dump_spec_toml,
    load_spec,
    parse_spec_document,
    parse_spec_text,
)

from .contract_vector_cases import SPEC

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))

ISSUE_EXAMPLE = """
[workload]
exe = "/bin/sh"
args = ["-c", "echo hi"]

[[capability]]
type = "child_spawn"            # policy: deny_new_tasks | allow_threads_within_boundary
policy = "deny_new_tasks"       #         | allow_descendants_within_boundary
[[capability]]
type = "filesystem"             # access: read | write | read_write
access = "read"
roots = ["/srv/data", "/opt/tool"]
[[capability]]
type = "network"
policy = "deny_all"             # or: allow_list = ["example.org:443"]
[[capability]]
type = "environment"
exact = { PATH = "/usr/bin:/bin", LANG = "C.UTF-8" }
leases = { API_TOKEN = "api-token" }
[[capability]]
type = "inherited_fds"
policy = "none"                 # or: only = [3]

[[control]]
type = "launch_workload"
[[control]]
type = "capture_streams"
stdout = true
stderr = true
[[control]]
type = "kill"
target = "run_tree"
guarantee = "atomic"            # or best_effort_allowed

[budgets]                       # a dimension left out is not requested
wall_micros = { limit = 10000000, guarantee = "enforced" }
process_count = { limit = 16, guarantee = "enforced" }
resident_bytes = { limit = 268435456, guarantee = "enforced" }

[evidence]
require_captured_streams = true
require_exit_status = true
"""

MINIMAL = '[workload]\nexe = "/bin/true"\n[[control]]\ntype = "launch_workload"\n'


def toml_error(text: str) -> SpecFileError:
    with pytest.raises(SpecFileError) as info:
        parse_spec_text(text, "toml", "test.toml")
    return info.value


def test_issue_example_loads() -> None:
    spec = parse_spec_text(ISSUE_EXAMPLE, "toml")
    assert spec.workload == ProcessWorkload("/bin/sh", ("-c", "echo hi"))
    assert ChildSpawn(SpawnPolicy.DENY_NEW_TASKS) in spec.capabilities
    assert Filesystem(FsAccess.READ, ("/opt/tool", "/srv/data")) in spec.capabilities
    env = next(c for c in spec.capabilities if isinstance(c, Environment))
    assert EnvEntry("API_TOKEN", SecretLease("api-token")) in env.policy.entries
    assert EnvEntry("LANG", EnvLiteral("C.UTF-8")) in env.policy.entries
    assert spec.budgets.wall_micros == Budget(10_000_000, MinGuarantee.ENFORCED, True)
    assert spec.evidence.required == {
        EvidenceClaim.CAPTURED_STREAMS,
        EvidenceClaim.TERMINAL_OUTCOME,  # require_exit_status is its alias
    }


@pytest.mark.parametrize("dump", [dump_spec_toml, dump_spec_json])
def test_round_trip(dump: object) -> None:
    for spec in (SPEC, parse_spec_text(ISSUE_EXAMPLE, "toml")):
        text = dump(spec)  # type: ignore[operator]
        fmt = "toml" if dump is dump_spec_toml else "json"
        again = parse_spec_text(text, fmt)
        assert again == spec
        assert again.encode() == spec.encode()
        assert dump(again) == text  # type: ignore[operator]


def test_toml_and_json_share_one_shape() -> None:
    spec = parse_spec_text(ISSUE_EXAMPLE, "toml")
    assert parse_spec_text(json.dumps(json.loads(dump_spec_json(spec))), "json") == spec


def test_dump_escapes_awkward_strings() -> None:
    text = MINIMAL.replace('"/bin/true"', '"/bin/true"\nargs = ["a\\"b", "tab\\t", "\\u0001", "é"]')
    spec = parse_spec_text(text, "toml")
    caps = (Environment(EnvPolicy.of({"WEIRD KEY": 'q"\\', "T": "\x7f\n"})),)
    spec = type(spec)(spec.workload, caps, spec.controls)
    assert parse_spec_text(dump_spec_toml(spec), "toml") == spec


def test_reordered_file_gives_same_spec_and_requirement_keys() -> None:
    doc: dict[str, Any] = {
        "workload": {"exe": "/bin/true"},
        "capability": [
            {"type": "filesystem", "access": "read", "roots": ["/b", "/a"]},
            {"type": "child_spawn", "policy": "deny_new_tasks"},
        ],
        "control": [{"type": "temp_root"}, {"type": "launch_workload"}],
    }
    flipped = {
        "control": doc["control"][::-1],
        "capability": [
            {"type": "child_spawn", "policy": "deny_new_tasks"},
            {"type": "filesystem", "access": "read", "roots": ["/a", "/b"]},
        ],
        "workload": {"exe": "/bin/true"},
    }
    one, two = parse_spec_document(doc), parse_spec_document(flipped)
    assert one == two
    assert [r.key() for r in requirements_of(one)] == [r.key() for r in requirements_of(two)]


def test_workload_override_and_missing_workload() -> None:
    no_workload = '[[control]]\ntype = "launch_workload"\n'
    error = toml_error(no_workload)
    assert error.path == "workload"
    override = ProcessWorkload("/bin/echo", ("hi",))
    spec = parse_spec_text(no_workload, "toml", workload_override=override)
    assert spec.workload == override
    assert parse_spec_text(MINIMAL, "toml", workload_override=override).workload == override


def test_optional_forms() -> None:
    text = MINIMAL + (
        '[[capability]]\ntype = "network"\nallow_list = ["Example.org:443"]\n'
        '[[capability]]\ntype = "inherited_fds"\nonly = [4, 3]\n'
        '[[capability]]\ntype = "environment"\n'
    )
    spec = parse_spec_text(text, "toml")
    assert Network(NetworkAllowList(("example.org:443",))) in spec.capabilities
    assert InheritedFds(FdsOnly((3, 4))) in spec.capabilities
    assert parse_spec_text(dump_spec_toml(spec), "toml") == spec


BAD = [
    # (snippet appended to MINIMAL or full text, expected str(error))
    (
        '[[capability]]\ntype = "child_spawn"\npolicy = "fork"\n',
        "capability[0].policy: expected one of deny_new_tasks, allow_threads_within_boundary, "
        "allow_descendants_within_boundary (got 'fork')",
    ),
    (
        '[[capability]]\ntype = "network"\npolicy = "deny_all"\n'
        '[[capability]]\ntype = "child_spawn"\npolicy = 3\n',
        "capability[1].policy: expected one of deny_new_tasks, allow_threads_within_boundary, "
        "allow_descendants_within_boundary (got integer)",
    ),
    (
        '[[capability]]\ntype = "teleport"\n',
        "capability[0].type: expected one of filesystem, network, child_spawn, environment, "
        "inherited_fds (got 'teleport')",
    ),
    ('[[capability]]\npolicy = "none"\n', "capability[0].type: missing required key"),
    (
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = ["/a"]\ncolour = 1\n',
        "capability[0].colour: unknown key (allowed: access, recursive, roots, type)",
    ),
    (
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = "/a"\n',
        "capability[0].roots: expected an array, got string",
    ),
    (
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = ["/a", "data"]\n',
        "capability[0].roots[1]: must be an absolute path (got 'data')",
    ),
    (
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = ["/a/./b"]\n',
        "capability[0].roots[0]: must be a normalized path (got '/a/./b', did you mean '/a/b'?)",
    ),
    (
        '[[capability]]\ntype = "network"\nallow_list = ["a.org:1", "nope"]\n',
        "capability[0].allow_list[1]: expected host:port (got 'nope')",
    ),
    (
        '[[capability]]\ntype = "network"\npolicy = "deny_all"\nallow_list = ["a.org:1"]\n',
        "capability[0]: give exactly one of policy or allow_list",
    ),
    (
        '[[capability]]\ntype = "network"\npolicy = "allow_all"\n',
        "capability[0].policy: expected deny_all (for an allow list use allow_list = [...])",
    ),
    (
        '[[capability]]\ntype = "inherited_fds"\nonly = [3, 1]\n',
        "capability[0].only[1]: must be at least 3 (got 1)",
    ),
    (
        '[[capability]]\ntype = "environment"\nexact = { "A=B" = "x" }\n',
        "capability[0].exact.\"A=B\": name 'A=B' contains '='",
    ),
    (
        '[[capability]]\ntype = "environment"\nexact = { "" = "x" }\n',
        'capability[0].exact."": environment variable name is empty',
    ),
    (
        '[[capability]]\ntype = "environment"\nexact = { A = "x\\u0000" }\n',
        "capability[0].exact.A: value contains a NUL byte",
    ),
    (
        '[[capability]]\ntype = "environment"\nexact = { A = "x" }\nleases = { A = "r" }\n',
        "capability[0].leases.A: duplicate environment name 'A'",
    ),
    (
        '[[capability]]\ntype = "environment"\nexact = { A = 1 }\n',
        "capability[0].exact.A: expected a string, got integer",
    ),
    (
        '[[capability]]\ntype = "child_spawn"\npolicy = "deny_new_tasks"\n'
        '[[capability]]\ntype = "child_spawn"\npolicy = "deny_new_tasks"\n',
        "capability[1]: a second child_spawn capability (also capability[0])",
    ),
    (
        '[[control]]\ntype = "launch_workload"\n',
        "control[1]: duplicate launch_workload control (also control[0])",
    ),
    (
        '[[control]]\ntype = "kill"\nguarantee = "eventually"\n',
        "control[1].guarantee: expected one of atomic, best_effort_allowed (got 'eventually')",
    ),
    (
        '[[control]]\ntype = "temp_root"\nsize = 3\n',
        "control[1].size: unknown key (allowed: type)",
    ),
    (
        '[[control]]\ntype = "capture_streams"\nstdout = "yes"\n',
        "control[1].stdout: expected a boolean, got string",
    ),
    (
        '[budgets]\nwall_micros = { limit = -1, guarantee = "enforced" }\n',
        "budgets.wall_micros.limit: must be at least 0 (got -1)",
    ),
    (
        '[budgets]\nwall_micros = { limit = 1, guarantee = "strict" }\n',
        "budgets.wall_micros.guarantee: expected one of mediated, enforced (got 'strict')",
    ),
    (
        '[budgets]\nwall_micros = { limit = 1.5, guarantee = "enforced" }\n',
        "budgets.wall_micros.limit: expected an integer, got float",
    ),
    (
        "[budgets]\nwall_seconds = 1\n",
        "budgets.wall_seconds: unknown key (allowed: cpu_micros, "
        "handle_count, network_bytes, process_count, resident_bytes, storage_bytes, wall_micros)",
    ),
    ("[evidence]\nrequire_everything = true\n", None),
    (
        '[evidence]\nrequire_process_tree = "yes"\n',
        "evidence.require_process_tree: expected a boolean, got string",
    ),
    ("[extras]\nx = 1\n", None),
]


@pytest.mark.parametrize(("snippet", "message"), BAD)
def test_errors_name_the_key_path(snippet: str, message: str | None) -> None:
    error = toml_error(MINIMAL + snippet)
    if message is None:
        assert "unknown key" in str(error)
    else:
        assert str(error) == message
    assert error.source == "test.toml"
    assert error.describe().startswith("test.toml: ")


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ('exe = "bin/sh"', "workload.exe: must be an absolute path (got 'bin/sh')"),
        ('exe = "/bin/sh"\nargs = "-c"', "workload.args: expected an array, got string"),
        ('args = ["x"]', "workload.exe: missing required key"),
        ('exe = "/x"\nmodule_ref = "m"', "workload: give either exe/args or module_ref, not both"),
        ('exe = "/x"\nenv = {}', "workload.env: unknown key (allowed: args, exe, module_ref)"),
    ],
)
def test_workload_errors(workload: str, message: str) -> None:
    text = f'[workload]\n{workload}\n[[control]]\ntype = "launch_workload"\n'
    assert str(toml_error(text)) == message


def test_missing_launch_workload() -> None:
    assert str(toml_error('[workload]\nexe = "/bin/true"\n')) == (
        "control: launch_workload is required"
    )


def test_syntax_and_json_specific_errors(tmp_path: Path) -> None:
    assert toml_error("[workload\n").code == "syntax"
    with pytest.raises(SpecFileError) as info:
        parse_spec_text('{"workload": {"exe": "/a"}, "workload": {}}', "json")
    assert "duplicate key" in str(info.value)
    with pytest.raises(SpecFileError) as info:
        parse_spec_text("[1, 2]", "json")
    assert info.value.code == "wrong-type"
    bad = tmp_path / "spec.yaml"
    bad.write_text("x: 1")
    with pytest.raises(SpecFileError) as info:
        load_spec(bad)
    assert info.value.code == "unknown-format"
    with pytest.raises(SpecFileError) as info:
        load_spec(tmp_path / "missing.toml")
    assert info.value.code == "unreadable"


def test_load_from_disk_both_formats(tmp_path: Path) -> None:
    spec = parse_spec_text(ISSUE_EXAMPLE, "toml")
    (tmp_path / "s.toml").write_text(dump_spec_toml(spec))
    (tmp_path / "s.json").write_text(dump_spec_json(spec))
    assert load_spec(tmp_path / "s.toml") == spec == load_spec(str(tmp_path / "s.json"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "deny-new-tasks.toml",
        "allow-descendants-atomic-kill.toml",
        "no-network.toml",
        "read-data-write-output.toml",
        "budgeted-timeout.toml",
        "refused-network-allow-list.toml",
        "network-allow-list.toml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_round_trips_and_explains_itself(path: Path) -> None:
    spec = load_spec(path)
    assert parse_spec_text(dump_spec_toml(spec), "toml") == spec
    assert parse_spec_text(dump_spec_json(spec), "json") == spec
    assert path.read_text().startswith("# "), "each example opens with a comment"


def test_named_examples_say_what_they_claim() -> None:
    by_name = {p.name: load_spec(p) for p in EXAMPLES}
    timeout = by_name["budgeted-timeout.toml"]
    assert timeout.budgets.wall_micros == Budget(1_000_000, MinGuarantee.ENFORCED)
    assert timeout.workload == ProcessWorkload("/bin/sleep", ("5",))
    refused = by_name["refused-network-allow-list.toml"]
    assert Network(NetworkAllowList(("dns.example.org:53/udp",))) in refused.capabilities
    allowed = by_name["network-allow-list.toml"]
    assert Network(NetworkAllowList(("example.org:443",))) in allowed.capabilities
    io = by_name["read-data-write-output.toml"]
    accesses = {c.access for c in io.capabilities if isinstance(c, Filesystem)}
    assert accesses == {FsAccess.READ, FsAccess.READ_WRITE}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_confines_the_network(path: Path) -> None:
    """A spec without a network capability shares the host's network namespace: its
    workload may listen on host ports and abstract socket names, where a host client
    connects to it and may hand it fds (found by attack on the examples that left the
    family out). The examples are what users copy, so each one names the network."""
    from bvisor.contract.capabilities import Network

    spec = load_spec(path)
    assert any(isinstance(c, Network) for c in spec.capabilities), path.name
