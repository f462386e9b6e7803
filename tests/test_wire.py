"""The generated gRPC code in node/wire/ is exactly what `make proto` produces from proto/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ["ledger_pb2.py", "ledger_pb2.pyi", "ledger_pb2_grpc.py",
             "consensus_pb2.py", "consensus_pb2.pyi", "consensus_pb2_grpc.py"]


def test_generated_code_matches_the_proto_files(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Inode/wire=proto", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", "proto/ledger.proto", "proto/consensus.proto"],
        cwd=ROOT, check=True)
    for name in GENERATED:
        fresh = (tmp_path / "node" / "wire" / name).read_bytes()
        committed = (ROOT / "node" / "wire" / name).read_bytes()
        assert fresh == committed, f"node/wire/{name} differs from proto/: run `make proto` and commit"
