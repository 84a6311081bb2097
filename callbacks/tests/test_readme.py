"""Every ```python block of the distribution's README runs as written, on its own, and prints what it documents.

A ``print(...)`` documents its output in a comment: on its line (``print(x)  # [1, 2]``,
where ``; ...`` or `` (...)`` after the output explains it), or, without one, in the
comment lines right below it. ``...`` in a documented output stands for any text.
"""

import re
import sys
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


def documented_outputs(code: str) -> dict[int, str]:
    """Line number in ``code`` of each print with a documented output -> that output."""
    lines = code.splitlines()
    outputs = {}
    for number, line in enumerate(lines, start=1):
        if not line.startswith("print("):
            continue
        inline = re.search(r"\)  # (.+)$", line)
        if inline:
            outputs[number] = re.split(r"; | \(", inline.group(1), maxsplit=1)[0]
            continue
        below = []
        for following in lines[number:]:
            if not following.startswith("# "):
                break
            below.append(following[2:])
        if below:
            outputs[number] = " ".join(below)
    return outputs


def _matches(printed: str, documented: str) -> bool:
    pattern = ".+?".join(re.escape(part) for part in documented.split("..."))
    return re.fullmatch(pattern, " ".join(printed.split())) is not None


def test_documented_outputs_are_found():
    found = {block_id: documented_outputs(code) for block_id, code in BLOCKS}
    assert sum(len(outputs) for outputs in found.values()) >= 9, found


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[block_id for block_id, _ in BLOCKS])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write logs/ or plots into the working directory
    printed = {}

    def record(*args, **kwargs):
        printed[sys._getframe(1).f_lineno] = " ".join(str(a) for a in args)

    exec(compile(code, str(README), "exec"), {"__name__": "__readme__", "print": record})
    for line, documented in documented_outputs(code).items():
        assert line in printed, (line, documented)
        assert _matches(printed[line], documented), (line, printed[line], documented)
