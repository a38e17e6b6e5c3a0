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


def test_prompt_from_stdin_and_stop_and_min_new_tokens(tiny_model_path):
    path = str(tiny_model_path[0])
    kw = dict(max_new_tokens=30, min_new_tokens=30, temperature=3.0, seed=11)
    full = nextoken.load(path, n_ctx=2048).generate("the", **kw)
    stop = full[10:12]
    expected = nextoken.load(path, n_ctx=2048).generate("the", stop=[stop], **kw)
    args = ["generate", "-", "--model", path, "--max-new-tokens", "30", "--min-new-tokens", "30",
            "--temperature", "3.0", "--seed", "11", "--stop", stop]
    done = subprocess.run([sys.executable, "-m", "nextoken", *args], input="the", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n" and len(expected) < len(full)


def test_version_and_defaults_in_help():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"nextoken {nextoken.__version__}"
    text = " ".join(run("generate", "--help").stdout.split())  # as one line: the help is wrapped
    assert "(default: 128)" in text and "(default: 2048)" in text and "prompt itself is not printed" in text


def test_ctrl_c_exits_with_130_and_no_traceback(smollm2_path):
    """SIGINT once text is flowing (200 tokens of SmolLM2 take seconds, the signal microseconds)."""
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "nextoken", "generate", "Once upon a time", "--model",
                             str(smollm2_path), "--max-new-tokens", "200", "--min-new-tokens", "200", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.read(1)  # generation has started
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out.endswith("\n")


def test_chat_keeps_the_history(smollm2_path):
    """Two turns through stdin: each reply equals model.chat() on the conversation so far."""
    turns = ["What is the capital of France?", "And of Italy?"]
    done = subprocess.run([sys.executable, "-m", "nextoken", "chat", "--model", str(smollm2_path), "--max-new-tokens",
                           "12", "--threads", "1"], input="\n".join(turns) + "\n", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    model = nextoken.load(smollm2_path, n_ctx=4096, n_threads=1)
    messages, expected = [], []
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        reply = model.chat(messages, max_new_tokens=12)
        messages.append({"role": "assistant", "content": reply})
        expected.append(reply)
    assert done.stdout == "".join(r + "\n" for r in expected)
