"""`bvisor plan SPEC`: admit a spec against this kernel and show the plan, or the refusal.

``bvisor plan -- CMD`` plans the default spec ``bvisor run -- CMD`` would use on this host,
default limits included (and says which are Enforced and which only Mediated).

Nothing runs. Exit 0 with the plan (plan_id, h_a, h_p, h_l, the admitted requirements
with their enforcement and mechanism, budgets, evidence, the workload's mount table — what
its private root will hold: destination, source, access — and the lowering schedule); exit 125
with the refusal's stable ``code``, the ``requirement`` it concerns and a ``detail``; exit
2 when the spec file itself is unreadable or invalid (the message names the key path).
"""

from __future__ import annotations

import argparse
from typing import Any

from bvisor.front import jsonview

__all__ = ["add_arguments", "mount_table", "plan_document", "render_plan", "run"]

EXIT_USAGE = 2
EXIT_REFUSED = 125


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bvisor.front.defaults import add_limit_arguments

    parser.add_argument(
        "target",
        metavar="SPEC | -- CMD",
        nargs="*",
        help="a spec file (.toml or .json), or `-- CMD ARGS...` to plan the default spec of "
        "`bvisor run -- CMD` (its default limits, or the --limit-* given)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan or refusal as JSON")
    add_limit_arguments(parser)


def mount_table(plan: Any) -> list[dict[str, Any]]:
    """The private root the plan builds: ``{dest, source, access}`` per mount, in order.

    Empty when the plan has no private root (a spec without a filesystem capability sees
    the host's tree). Host pathname sockets exist for the workload only inside these.
    """
    from bvisor.contract import mechanisms as mech

    entry = next((p for p in plan.lowering if p.entry.id == mech.ROOTFS.id), None)
    if entry is None:
        return []
    rows: list[dict[str, Any]] = []
    for mount in mech.Rootfs.from_value(entry.params).mounts:
        if isinstance(mount, mech.BindMount):
            source = mount.source + ("" if mount.required else " (if this host has it)")
            rows.append({"dest": mount.dest, "source": source, "access": mount.access})
        elif isinstance(mount, mech.DevMount):
            devices = ",".join(mount.devices) + (", a pty of its own" if mount.pts else "")
            source = f"minimal /dev ({devices}; shm {mount.shm_bytes} bytes)"
            rows.append({"dest": mount.dest, "source": source, "access": "devices"})
        elif isinstance(mount, mech.ProcMount):
            source = "procfs of the run's PID namespace (sys, irq, bus read-only)"
            rows.append({"dest": mount.dest, "source": source, "access": "read"})
        elif isinstance(mount, mech.TmpfsMount):
            source = f"private tmpfs ({mount.size_bytes} bytes)"
            rows.append({"dest": mount.dest, "source": source, "access": "write"})
        elif isinstance(mount, mech.FileMount):
            size = len(mount.content.encode())
            source = f"a file of the plan ({size} bytes: the allow list's resolver)"
            rows.append({"dest": mount.dest, "source": source, "access": "read"})
        else:
            rows.append({"dest": mount.dest, "source": "directory", "access": "write"})
    return rows


def network_view(plan: Any) -> dict[str, Any] | None:
    """The allow list's proxy as the plan schedules it (None without one): where the
    listener is, what it admits, and the variables the exec's environment points at it."""
    from bvisor.contract import mechanisms as mech

    ids = [entry.id for entry in plan.entries]
    if mech.NETPROXY.id not in ids:
        return None
    proxy = mech.NetProxy.from_value(plan.params_of(mech.NETPROXY.id))
    scrub = mech.AmbientScrub.from_value(plan.params_of(mech.AMBIENT_SCRUB.id))
    names = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    budget = None
    if mech.BUDGET_NETWORK.id in ids:
        budget = mech.NetworkBudget.from_value(plan.params_of(mech.BUDGET_NETWORK.id)).limit_bytes
    resolver = None
    if mech.NETDNS.id in ids:
        port = mech.NetDns.from_value(plan.params_of(mech.NETDNS.id)).port
        resolver = f"udp 127.0.0.1:{port}"
    return {
        "listener": f"127.0.0.1:{proxy.port}",
        "resolver": resolver,
        "allow": list(proxy.allow),
        "environment": {
            s.name: s.literal for s in scrub.env if s.name.upper() in names and s.literal
        },
        "budget_bytes": budget,
        "landlock_connect_ports": (
            list(mech.LandlockNet.from_value(plan.params_of(mech.LANDLOCK_NET.id)).connect_ports)
            if mech.LANDLOCK_NET.id in ids
            else []
        ),
    }


# The families a spec that names none of their capabilities leaves as the host has them.
_UNCONFINED: dict[str, str] = {
    "filesystem": "the host's whole filesystem, as far as the workload's uid may reach",
    "network": "the host's network: its ports and abstract socket names (clients connect in)",
}


def unconfined(plan: Any) -> list[str]:
    """The families of :data:`_UNCONFINED` the plan's spec names no capability of (a spec
    confines what it names: README, "What the boundary does and does not cover")."""
    from bvisor.contract.capabilities import capability_family

    named = {capability_family(c) for c in plan.spec.capabilities}
    return [family for family in _UNCONFINED if family not in named]


def plan_document(plan: Any) -> dict[str, Any]:
    """The JSON shape of an admitted plan."""
    record = plan.admission
    return {
        "admitted": True,
        "backend": plan.backend,
        "plan_id": plan.plan_id,
        "h_p": plan.h_p,
        "h_a": plan.h_a,
        "h_l": plan.h_l,
        "requirements": [
            {
                "key": r.key,
                "policy": r.policy,
                "enforcement": r.verdict.title,
                "mechanism": r.mechanism,
            }
            for r in record.requirements
        ],
        "budgets": [
            {
                "dimension": b.dimension,
                "limit": b.limit,
                "enforcement": b.granted.title,
                "mechanism": b.mechanism,
            }
            for b in record.budgets
        ],
        "evidence": [{"claim": e.claim, "mechanism": e.cell.mechanism} for e in record.evidence],
        "mounts": mount_table(plan),
        "network": network_view(plan),
        "rules_version": record.rules_version,
        "lowering": [entry.to_value() for entry in plan.entries],
        "not_confined": unconfined(plan),
    }


def render_plan(plan: Any) -> str:
    """A readable summary of an admitted plan."""
    from bvisor.contract.lowering import Phase

    record = plan.admission
    lines = [f"bvisor plan: admitted on backend {plan.backend}", ""]
    lines += [
        f"  {name:<8} {getattr(plan, name).hex()}" for name in ("plan_id", "h_p", "h_a", "h_l")
    ]
    if record.requirements:
        width = max(len(r.key) for r in record.requirements)
        lines += ["", "Requirements", f"  {'KEY':<{width}}  {'LEVEL':<10}  MECHANISM"]
        lines += [
            f"  {r.key:<{width}}  {r.verdict.title:<10}  {r.mechanism}" for r in record.requirements
        ]
    if record.budgets:
        lines += ["", "Budgets", f"  {'DIMENSION':<15} {'LIMIT':>20}  {'LEVEL':<10}  MECHANISM"]
        lines += [
            f"  {b.dimension:<15} {b.limit:>20}  {b.granted.title:<10}  {b.mechanism}"
            for b in record.budgets
        ]
    if record.evidence:
        lines += ["", "Evidence"]
        lines += [f"  {e.claim:<22} {e.cell.mechanism}" for e in record.evidence]
    mounts = mount_table(plan)
    if mounts:
        width = max(len(m["dest"]) for m in mounts)
        lines += ["", "Mounts (the workload's whole root)", f"  {'DEST':<{width}}  ACCESS   SOURCE"]
        lines += [f"  {m['dest']:<{width}}  {m['access']:<7}  {m['source']}" for m in mounts]
    network = network_view(plan)
    if network is not None:
        lines += ["", "Network (the allow list's proxy; everything else is denied)"]
        lines.append(f"  listener  {network['listener']} in the workload's empty netns")
        if network["resolver"] is not None:
            lines.append(f"  resolver  {network['resolver']}: answers listed names only")
        lines += [f"  allow     {entry}" for entry in network["allow"]]
        if network["budget_bytes"] is not None:
            lines.append(f"  budget    {network['budget_bytes']} bytes, both ways, cut there")
        lines += [f"  env       {k}={v}" for k, v in sorted(network["environment"].items())]
    left = unconfined(plan)
    if left:
        lines += ["", "Not confined (the spec names no capability of these: the host's own)"]
        lines += [f"  {family:<10}  {_UNCONFINED[family]}" for family in left]
    width = max(len(e.id) for e in plan.entries)
    lines += [
        "",
        f"Lowering (planner rules v{record.rules_version})",
        f"  {'PHASE':<19} {'ENTRY':<{width}}  PARAM_DIGEST",
    ]
    for e in plan.entries:
        phase = f"{e.phase_code} {Phase(e.phase_code).name}"
        lines.append(f"  {phase:<19} {e.id:<{width}}  {e.param_digest.hex()[:16]}")
    return "\n".join(lines)


def _spec(args: argparse.Namespace, command: list[str], snapshot: Any) -> Any:
    """The spec file, or the default spec of ``bvisor run -- CMD`` for this host."""
    from bvisor.front.defaults import default_spec, limits_from_args, limits_given
    from bvisor.front.specfile import load_spec

    if args.spec is not None:
        if limits_given(args):
            raise ValueError("--limit-* change the default spec; set [budgets] in the spec file")
        return load_spec(args.spec)
    if not command:
        raise ValueError("nothing to plan: give a SPEC, or `-- CMD` for the default spec")
    limits = limits_from_args(args)
    if isinstance(limits, str):
        raise ValueError(limits)
    return default_spec(command, snapshot=snapshot, limits=limits)


def _usage(args: argparse.Namespace, message: str, path: str) -> int:
    """A bad spec file: the message on stderr and, with --json, an error document on
    stdout (so a script parsing stdout gets JSON here too, not an empty string)."""
    from bvisor.front.cli.usage import report_error

    return report_error("bvisor plan", message, as_json=bool(args.json), path=path)


def run(args: argparse.Namespace) -> int:
    from bvisor.contract import ContractError
    from bvisor.front.cli.probe_cmd import launcher_path
    from bvisor.front.specfile import SpecFileError
    from bvisor.launcher.host.probe import linux_profile
    from bvisor.planner.errors import PlanRefusal
    from bvisor.planner.planning import plan_boundary

    snapshot = linux_profile(launcher_path())
    target = list(args.target)
    if target and target[0] == "--":
        target = target[1:]
    is_file = len(target) == 1 and target[0].endswith((".toml", ".json"))
    args.spec = target[0] if is_file else None
    command = [] if is_file else target
    try:
        spec = _spec(args, command, snapshot)
    except SpecFileError as exc:
        return _usage(args, exc.describe(), exc.path)
    except ContractError as exc:
        return _usage(args, f"{args.spec}: {exc}", exc.path)
    except ValueError as exc:  # an unrunnable command, a bad --limit-*
        return _usage(args, str(exc), "command")
    try:
        plan = plan_boundary(spec, snapshot)
    except PlanRefusal as refusal:
        if args.json:
            print(jsonview.dumps({"admitted": False, **refusal.to_value()}, indent=2))
        else:
            where = f" ({refusal.requirement})" if refusal.requirement else ""
            fact = f"\n  missing fact: {refusal.missing_fact}" if refusal.missing_fact else ""
            print(f"bvisor plan: refused [{refusal.code}]{where}: {refusal.detail}{fact}")
        return EXIT_REFUSED
    if args.json:
        print(jsonview.dumps(plan_document(plan), indent=2))
    else:
        print(render_plan(plan))
    return 0
