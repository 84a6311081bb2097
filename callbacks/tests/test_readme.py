"""Every ```python block of the distribution's README runs as written, on its own."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[tuple[str, str]]:
    """``(id, code)`` for each ```python block, the id naming the section it sits in."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        headings = re.findall(r"^## (.+)$", text[: match.start()], flags=re.MULTILINE)
        section = headings[-1].strip() if headings else "intro"
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((f"{section}-line{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[block_id for block_id, _ in BLOCKS])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write logs/ or plots into the working directory
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
