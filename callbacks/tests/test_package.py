import subprocess
import sys


def test_import_pulls_in_no_config_framework():
    """`lit_callbacks` must stay usable without Hydra, OmegaConf or lit_train."""
    code = (
        "import sys, lit_callbacks\n"
        "bad = sorted(m for m in ('hydra', 'omegaconf', 'lit_train') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
