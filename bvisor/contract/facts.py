"""The report's fact kinds that one part writes and another reads.

A report's ``observed`` facts are ``(kind, detail)`` pairs. Most kinds are written by one
module and only shown to people; the ones below are also *read*: replay checks that they
restate the recorded evidence exactly (the launcher's notes and terminal, the workload's
pid, the captured stream lengths, the launcher's identity, a test hook, the granted roots,
an interruption, a budget the kernel enforced), and ``bvisor run`` explains from them why a
workload never ran. Writer and readers import the kind from here, so a renamed kind cannot
leave a reader looking for a fact nobody writes. Facts with a home of their own keep it:
``network_activity`` (:mod:`bvisor.contract.netpolicy`), ``output_listed`` and
``outputs_truncated`` (:mod:`bvisor.contract.outputs`), the ``*_lowered`` facts
(:mod:`bvisor.contract.report_inputs`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BUDGET_EXCEEDED",
    "CGROUP_PREPARE_FAILED",
    "FILESYSTEM_CONFINED",
    "HOST_INTERRUPTED",
    "LAUNCHER_IDENTITY",
    "LAUNCHER_NOTE",
    "LAUNCHER_START_FAILED",
    "LAUNCHER_TERMINAL",
    "LAUNCH_REFUSED_BY_HOST",
    "LOWERING_PARAMS_INVALID",
    "NOT_RUN",
    "STDIN_SOURCE",
    "STREAM_CAPTURED",
    "TEST_HOOK_ACTIVE",
    "WORKLOAD_LAUNCHED",
    "WORKLOAD_STATUS_UNKNOWN",
]

# The transcript, restated (replay: must equal the recorded launcher.phase lines).
LAUNCHER_NOTE: Final = "launcher_note"
LAUNCHER_TERMINAL: Final = "launcher_terminal"
WORKLOAD_LAUNCHED: Final = "workload_launched"  # pid=N, as the launcher noted it
LAUNCHER_IDENTITY: Final = "launcher_identity"  # must be the profile's launcher identity
STREAM_CAPTURED: Final = "stream_captured"  # "<stream> bytes=N", the stream record's length
# Marks replay holds the report to.
TEST_HOOK_ACTIVE: Final = "test_hook_active"
FILESYSTEM_CONFINED: Final = "filesystem_confined"
HOST_INTERRUPTED: Final = "host_interrupted"
BUDGET_EXCEEDED: Final = "budget_exceeded"
STDIN_SOURCE: Final = "stdin_source"
# Why a workload never ran (``bvisor run`` shows the detail of each).
LAUNCH_REFUSED_BY_HOST: Final = "launch_refused_by_host"
LAUNCHER_START_FAILED: Final = "launcher_start_failed"
CGROUP_PREPARE_FAILED: Final = "cgroup_prepare_failed"
LOWERING_PARAMS_INVALID: Final = "lowering_params_invalid"
WORKLOAD_STATUS_UNKNOWN: Final = "workload_status_unknown"
NOT_RUN: Final = (
    LAUNCH_REFUSED_BY_HOST,
    LAUNCHER_START_FAILED,
    CGROUP_PREPARE_FAILED,
    LOWERING_PARAMS_INVALID,
    WORKLOAD_STATUS_UNKNOWN,
)
