"""The C child window and its Python side agree on every number they share.

The op codes (``enum bv_op_code`` in ``process/child/window.h`` against
``bvisor.launcher.process.program.OP_CODES``), the mount kinds (``enum bv_mount_kind`` in
``mechanisms/rootfs.c`` against the rootfs module's table), and that every op has its
phase function declared, its case in the dispatcher, and a mechanism module beside its
C file. The lowering's phase codes are not shared with C at all: the window reports ops
by index, and the launcher maps them to phases (one definition, on the Python side).
"""

from __future__ import annotations

import re
from pathlib import Path

from bvisor.contract import mechanisms as mech
from bvisor.launcher.process.mechanisms import rootfs
from bvisor.launcher.process.program import OP_CODES

LAUNCHER = Path(__file__).resolve().parents[2] / "launcher"
HEADER = (LAUNCHER / "process" / "child" / "window.h").read_text()
CORE = (LAUNCHER / "process" / "child" / "window.c").read_text()


def _enum(source: str, name: str, prefix: str) -> dict[str, int]:
    body = re.search(rf"enum {name} \{{(.*?)\}};", source, re.S)
    assert body, f"enum {name} not found"
    return {
        key.lower(): int(value)
        for key, value in re.findall(rf"{prefix}([A-Z_]+) = (\d+)", body.group(1))
    }


def test_op_codes_agree() -> None:
    assert _enum(HEADER, "bv_op_code", "BV_OP_") == OP_CODES


def test_every_op_has_a_phase_function_and_a_dispatch_case() -> None:
    for name in OP_CODES:
        assert f"int bv_phase_{name}(const void *args, struct bv_ctx *ctx);" in HEADER, name
        assert f"case BV_OP_{name.upper()}:" in CORE, name


def test_mount_kinds_agree() -> None:
    source = (LAUNCHER / "process" / "mechanisms" / "rootfs.c").read_text()
    kinds = _enum(source, "bv_mount_kind", "BV_MOUNT_")
    assert kinds == {cls.KIND: code for cls, code in rootfs._KIND.items()}


def test_each_c_phase_sits_beside_its_mechanism_module() -> None:
    folder = LAUNCHER / "process" / "mechanisms"
    for source in folder.glob("*.c"):
        assert source.with_suffix(".py").is_file(), f"{source.name} has no Python module beside it"


def test_device_numbers_are_one_table() -> None:
    # The C side checks the numbers it is handed; the table itself is Python's only.
    source = (LAUNCHER / "process" / "mechanisms" / "rootfs.c").read_text()
    assert "makedev" not in source and "major(st.st_rdev) != m->dev_major[i]" in source
    assert set(mech.DEVICES) >= {"null", "zero", "full", "random", "urandom", "tty"}
