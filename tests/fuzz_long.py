"""The fuzz targets of test_fuzz.py with many more inputs than CI runs, from a fresh random seed:

    python tests/fuzz_long.py                    # 100000 inputs per target
    python tests/fuzz_long.py 20000 -k gguf      # 20000 inputs, the GGUF target only (other arguments go to pytest)
    python tests/fuzz_long.py 20000 --seed 7     # the same inputs as an earlier run that printed seed 7

Not collected by pytest (the name does not start with test_). The seed is printed first: a failure prints the
smallest input found (and a @reproduce_failure blob); a crash or a hang ends the process with every thread's
stack, and the same seed replays the run up to it.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path


def main(argv: list) -> int:
    count = int(argv.pop(0)) if argv and argv[0].isdigit() else 100_000
    seed = random.randrange(2**32)
    if "--seed" in argv:
        i = argv.index("--seed")
        seed = int(argv[i + 1])
        del argv[i:i + 2]
    os.environ["NEXTOKEN_FUZZ_EXAMPLES"] = str(count)
    os.environ["NEXTOKEN_FUZZ_RANDOM"] = "1"
    print(f"fuzz_long: {count} inputs per target, seed {seed} (python tests/fuzz_long.py {count} --seed {seed} "
          "replays it)", flush=True)
    select = "test_fuzz_"  # the targets, not the regression tests beside them
    if "-k" in argv:
        i = argv.index("-k")
        select = f"test_fuzz_ and ({argv[i + 1]})"
        del argv[i:i + 2]
    import pytest
    here = Path(__file__).parent
    return pytest.main([str(here / "test_fuzz.py"), "-k", select, "-q", "-p", "no:cacheprovider",
                        f"--hypothesis-seed={seed}", "--hypothesis-show-statistics", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
