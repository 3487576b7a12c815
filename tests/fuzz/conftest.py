"""Makes ``lmq_fuzz_programs`` (the program strategies) importable by the fuzz tests."""

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
