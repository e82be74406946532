"""`bvisor probe`: what this kernel can enforce, cell by cell, and why — plus h_p.

Probing is the planner's one impure step; this command shows exactly the snapshot a
``bvisor plan`` or ``bvisor run`` started now would be admitted against, including how
each fact was established, so a refusal can be understood before it happens.
"""

from __future__ import annotations

import argparse
from typing import Any

from bvisor.front import jsonview

__all__ = ["add_arguments", "probe_document", "render_probe", "run"]

LAUNCHER_NAME = "bvisor-linux-launcher"


def launcher_path() -> str | None:
    """The launcher ``bvisor run`` would use (beside this interpreter, else on PATH), so
    the profile shown here has the same h_p as a run started now; None if not installed."""
    from bvisor.launcher.host.locate import LauncherNotFound, default_launcher_path

    try:
        return default_launcher_path()
    except LauncherNotFound:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")


def probe_document(snapshot: Any) -> dict[str, Any]:
    """The JSON shape: ``backend``, ``facts``, ``ceiling`` (by key), ``h_p``."""
    from bvisor.contract.profile import profile_digest

    return {
        "backend": snapshot.backend,
        "facts": snapshot.facts.to_value(),
        "ceiling": {
            cell.key: {
                "enforcement": cell.enforcement.title,
                "mechanism": cell.mechanism,
                "evidence": list(cell.evidence),
                "reason": cell.reason,
            }
            for cell in snapshot.ceiling
        },
        "h_p": profile_digest(snapshot),
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_probe(snapshot: Any) -> str:
    """A readable table of facts, ceiling cells and the notes behind them."""
    from bvisor.contract.profile import profile_digest

    f = snapshot.facts
    v1 = ", ".join(f"{c}: {b}" for c, b in f.cgroup_v1_bases) or "none writable"
    v2 = (
        f"base {f.cgroup_v2_base} (cgroup.kill: {_yes(f.cgroup_v2_kill)}; leaf controllers: "
        f"{' '.join(f.cgroup_v2_controllers) or 'none'})"
        if f.cgroup_v2_base
        else f"no writable base (mount: {f.cgroup_v2_mount or 'none'})"
    )
    launcher = (
        f"{f.launcher_path} (BLAKE3 {f.launcher_identity or 'unreadable'})"
        if f.launcher_path
        else f"{LAUNCHER_NAME} not installed (beside this interpreter or on PATH)"
    )
    facts = [
        ("kernel", f"{f.kernel_release} ({f.arch})"),
        ("landlock_abi", str(f.landlock_abi) if f.landlock_abi else "0 (no Landlock)"),
        (
            "seccomp",
            f"filter: {_yes(f.seccomp_filter)}; actions: {' '.join(f.seccomp_actions) or 'none'}",
        ),
        (
            "userns / netns",
            f"{_yes(f.userns)} / {_yes(f.netns)} (max_user_namespaces {f.max_user_namespaces})",
        ),
        ("cgroup v2", v2),
        ("cgroup v1", v1),
        ("host uid/gid", f"{f.host_uid}/{f.host_gid}"),
        ("launcher", launcher),
    ]
    lines = [f"bvisor probe: backend {snapshot.backend}", "", "Facts"]
    lines += [f"  {name:<16} {value}" for name, value in facts]
    key_w = max(len(c.key) for c in snapshot.ceiling)
    mech_w = max(len(c.mechanism) for c in snapshot.ceiling)
    lines += ["", "Ceiling", f"  {'KEY':<{key_w}}  {'LEVEL':<11}  {'MECHANISM':<{mech_w}}  WHY"]
    for c in snapshot.ceiling:
        lines.append(
            f"  {c.key:<{key_w}}  {c.enforcement.title:<11}  {c.mechanism:<{mech_w}}  {c.reason}"
        )
    lines += ["", "How the facts were established"]
    lines += [f"  - {note}" for note in f.probe_notes]
    lines += ["", f"h_p  {profile_digest(snapshot).hex()}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bvisor.launcher.host.probe import linux_profile

    snapshot = linux_profile(launcher_path())
    if args.json:
        print(jsonview.dumps(probe_document(snapshot), indent=2))
    else:
        print(render_probe(snapshot))
    return 0
