"""EnvPolicy validation: each rule is its own error, naming the offending entry."""

from __future__ import annotations

import pytest

from bvisor.contract import (
    ENV_MAX_BYTES,
    ENV_MAX_ENTRIES,
    ContractError,
    EnvEntry,
    EnvLiteral,
    EnvPolicy,
    SecretLease,
)


def lit(name: str, value: str = "v") -> EnvEntry:
    return EnvEntry(name, EnvLiteral(value))


@pytest.mark.parametrize(
    ("build", "code", "fragment"),
    [
        (lambda: lit(""), "env-empty-name", "name is empty"),
        (lambda: lit("A=B"), "env-name-has-equals", "'A=B'"),
        (lambda: lit("A\x00B"), "env-name-has-nul", "NUL"),
        (lambda: lit("A", "x\x00y"), "env-value-has-nul", "NUL"),
        (lambda: EnvEntry("A", SecretLease("r\x00")), "env-value-has-nul", "NUL"),
        (lambda: EnvEntry("A", SecretLease("")), "env-empty-lease", "empty"),
    ],
)
def test_entry_rules(build: object, code: str, fragment: str) -> None:
    with pytest.raises(ContractError) as info:
        build()  # type: ignore[operator]
    assert info.value.code == code
    assert fragment in str(info.value)


def test_duplicate_name_names_the_second_entry() -> None:
    with pytest.raises(ContractError) as info:
        EnvPolicy.exact((lit("A"), lit("B"), lit("A", "other")))
    assert info.value.code == "env-duplicate-name"
    assert info.value.path == "entries[2]"
    assert "'A'" in info.value.message


def test_duplicate_across_literal_and_lease_is_refused() -> None:
    with pytest.raises(ContractError) as info:
        EnvPolicy.exact((lit("TOKEN"), EnvEntry("TOKEN", SecretLease("ref"))))
    assert info.value.code == "env-duplicate-name"


def test_entry_limit_is_exact() -> None:
    at_limit = [lit(f"V{i}") for i in range(ENV_MAX_ENTRIES)]
    assert len(EnvPolicy.exact(at_limit).entries) == ENV_MAX_ENTRIES
    with pytest.raises(ContractError) as info:
        EnvPolicy.exact([*at_limit, lit("ONE_TOO_MANY")])
    assert info.value.code == "env-too-many-entries"
    assert info.value.path == f"entries[{ENV_MAX_ENTRIES}]"
    assert "ONE_TOO_MANY" in info.value.message


def test_byte_limit_counts_name_equals_value_nul() -> None:
    # One entry "A=<value>\0" of exactly ENV_MAX_BYTES bytes is allowed; one byte more is not.
    fits = lit("A", "x" * (ENV_MAX_BYTES - 3))
    assert EnvPolicy.exact((fits,)).byte_size() == ENV_MAX_BYTES
    with pytest.raises(ContractError) as info:
        EnvPolicy.exact((lit("A", "x" * (ENV_MAX_BYTES - 2)),))
    assert info.value.code == "env-too-large"
    assert "'A'" in info.value.message


def test_byte_limit_names_the_entry_that_crosses_it() -> None:
    half = "x" * (ENV_MAX_BYTES // 2)
    with pytest.raises(ContractError) as info:
        EnvPolicy.exact((lit("FIRST", half), lit("SECOND", half)))
    assert info.value.code == "env-too-large"
    assert info.value.path == "entries[1]"
    assert "SECOND" in info.value.message


def test_byte_limit_counts_utf8_bytes_not_characters() -> None:
    # "é" is two bytes: half as many characters already exceed the limit.
    with pytest.raises(ContractError):
        EnvPolicy.exact((lit("A", "é" * (ENV_MAX_BYTES // 2)),))


def test_order_does_not_matter_and_entries_are_stored_sorted() -> None:
    one = EnvPolicy.exact((lit("B"), lit("A"), EnvEntry("C", SecretLease("c"))))
    two = EnvPolicy.exact((EnvEntry("C", SecretLease("c")), lit("A"), lit("B")))
    assert one == two
    assert [e.name for e in one.entries] == ["A", "B", "C"]


def test_empty_exact_policy_is_allowed() -> None:
    assert EnvPolicy.exact().entries == ()


def test_literal_and_lease_with_same_text_differ() -> None:
    assert EnvPolicy.exact((lit("A", "x"),)) != EnvPolicy.exact((EnvEntry("A", SecretLease("x")),))
