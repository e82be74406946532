"""Regenerate tests/vectors/contract/encodings.json from the shared vector cases.

Run by hand only when an encoding changes on purpose (and say so in the commit):
    python3 tests/vectors/contract/generate.py
The test ``tests/contract/test_contract_vectors.py`` fails whenever the code's encodings
differ from the checked-in file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from tests.contract.contract_vector_cases import cases, encode_case  # noqa: E402


def main() -> None:
    vectors = {name: encode_case(obj).hex() for name, (obj, _) in sorted(cases().items())}
    out = HERE / "encodings.json"
    out.write_text(json.dumps(vectors, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
