"""Regenerate protos/stylegate/v1/*_pb2*.py from the .proto files (run from anywhere).

protoc is run with ``-I protos`` so that descriptors (and server reflection) use the
canonical file names ``stylegate/v1/*.proto``; the generated cross-file imports
(``from stylegate.v1 import ...``) are then rewritten to the importable package path
``stylegate.protos.v1``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = PROTO_ROOT / "stylegate" / "v1"
IMPORT_RE = re.compile(r"^from stylegate\.v1 import ", re.MULTILINE)


def main() -> int:
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf well-known types
    for proto in protos:
        rel = proto.relative_to(PROTO_ROOT).as_posix()
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                f"--python_out={PROTO_ROOT}",
                f"--pyi_out={PROTO_ROOT}",
                f"--grpc_python_out={PROTO_ROOT}",
                rel,
            ]
        )
        if rc != 0:
            print(f"protoc failed on {rel}", file=sys.stderr)
            return rc
    for generated in PACKAGE_DIR.glob("*_pb2*.py*"):
        text = generated.read_text()
        fixed = IMPORT_RE.sub("from stylegate.protos.v1 import ", text)
        if fixed != text:
            generated.write_text(fixed)
    for pkg in (PROTO_ROOT / "stylegate", PACKAGE_DIR):
        (pkg / "__init__.py").touch()
    print(f"generated {len(protos)} proto file(s) into {PACKAGE_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
