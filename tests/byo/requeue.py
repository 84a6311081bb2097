"""Runs lit_train under a SIGUSR2 handler of its own, as submitit installs one to requeue a SLURM job.

Usage: python requeue.py RECORD [lit_train overrides...]; the handler writes RECORD with what the run
directory held when it was called, then exits 3 as a requeueing job would end.
"""

import json
import signal
import sys
from pathlib import Path

from lit_train.launch.cli import main


def requeue(signum, frame):
    run_dir = Path(next(a for a in sys.argv if a.startswith("hydra.run.dir=")).split("=", 1)[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    record.write_text(json.dumps({"signal": signum, "status": summary["status"],
                                  "last_ckpt": (run_dir / "checkpoints" / "last.ckpt").is_file()}))
    sys.exit(3)


record = Path(sys.argv.pop(1))
signal.signal(signal.SIGUSR2, requeue)
main()
