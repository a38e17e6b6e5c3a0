"""The `nextoken` command (run as `python -m nextoken`, the same entry point as the console script)."""
import subprocess
import sys

import nextoken


def run(*args):
    return subprocess.run([sys.executable, "-m", "nextoken", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    done = run("--help")
    assert done.returncode == 0
    assert "generate" in done.stdout and "pull" in done.stdout


def test_generate_streams_the_models_text(tiny_model_path):
    path = str(tiny_model_path[0])
    done = run("generate", "the", "--model", path, "--max-new-tokens", "12", "--temperature", "0.9", "--seed", "4")
    assert done.returncode == 0, done.stderr
    expected = nextoken.load(path, n_ctx=2048).generate("the", max_new_tokens=12, temperature=0.9, seed=4)
    assert done.stdout == expected + "\n"


def test_generate_with_int8_compute(tiny_model_path):
    path = str(tiny_model_path[0])
    done = run("generate", "the", "--model", path, "--max-new-tokens", "12", "--compute-type", "int8")
    assert done.returncode == 0, done.stderr
    expected = nextoken.load(path, n_ctx=2048, compute_type="int8").generate("the", max_new_tokens=12)
    assert done.stdout == expected + "\n"


def test_generate_reports_bad_input_without_a_traceback(tmp_path, tiny_model_path):
    done = run("generate", "hello", "--model", str(tmp_path / "missing.gguf"))
    assert done.returncode == 2 and "no model file" in done.stderr and "Traceback" not in done.stderr
    done = run("generate", "hello", "--model", str(tiny_model_path[0]), "--temperature", "-1")
    assert done.returncode == 2 and "temperature" in done.stderr


def test_pull_prints_the_cached_path(smollm2_path):
    done = run("pull")
    assert done.returncode == 0
    assert done.stdout.strip() == str(smollm2_path)
