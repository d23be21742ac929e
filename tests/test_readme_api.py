"""The README's "Python API" lines run as they stand, and say what they claim."""
import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    text = README.read_text()
    start = text.index("Python API:")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_readme_python_api_runs():
    code = _api_block()
    assert len(code.strip().splitlines()) == 5
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own example
    step_s, comm_s, fastest = out.getvalue().splitlines()
    assert float(step_s) > 0 and float(comm_s) > 0
    assert fastest.startswith("PlanRow(width=")
    from perfmodel.predict import predict
    s = scope["s"]
    assert float(step_s) == predict("charlm", 4096, s.hardware, "fp16", seq_len=32, depth=2).time_per_step_s
