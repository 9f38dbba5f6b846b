"""The README's two set-up commands stay true: .ci/run runs the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv[^\n]+)\n```", text)


def test_readme_has_the_two_setup_commands():
    cmds = _commands()
    assert len(cmds) == 2
    main_job, tests = cmds
    assert main_job.endswith("archgrad search --config quickstart")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci.splitlines()


def test_constraints_pin_a_torch_the_package_accepts():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.\d+\.\d+$", pins, re.M)


def test_the_own_loop_example_runs_and_derives_a_genotype(capsys):
    """docs/python-api.md's loop of one's own, run as written."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(),
                        re.S)
    block = next(b for b in blocks if "strategy.step(" in b)
    exec(compile(block, "python-api.md", "exec"), {})
    out = capsys.readouterr().out.strip()
    loss, genotype = out.split(" ", 1)
    assert float(loss) > 0
    import archgrad
    archgrad.get_space("nb201").genotype(genotype)  # a well-formed NB201 cell


def test_ci_also_runs_the_slow_cases_the_readme_names():
    text = (ROOT / "README.md").read_text()
    slow = re.findall(r"```bash\n(\.venv/bin/python -m pytest[^\n]*-m slow)\n```", text)
    assert len(slow) == 1
    assert slow[0] in (ROOT / ".ci" / "run").read_text().splitlines()
