"""`agent-server tools` and `agent-server tool NAME ARGUMENT`, run as a user would: a subprocess.

No model is loaded by these commands; each runs the real tool through the same `invoke` path the
engine uses, so the printed text is exactly what the model would read.
"""

from __future__ import annotations

from pathlib import Path

from cli_run import cli

from agent_server.settings import Settings

SQUAD = Path(__file__).resolve().parents[1] / "data" / "squad_passages.jsonl"


def test_tools_lists_what_the_settings_enable(tmp_path):
    listed = cli("tools")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Calculator", "Python", "Search", "Retrieve"]
    assert "[Calculator(400/1400)]" in listed.stdout
    # The default documents folder (under AGENT_DATA_DIR, a fresh one here) is empty.
    assert lines[-1].endswith("(not offered to the model until it has documents)")

    (tmp_path / "notes.md").write_text("# Notes\nThe boiler was serviced in May.\n")
    with_docs = cli("tools", AGENT_DOCUMENTS=str(tmp_path))
    assert with_docs.returncode == 0, with_docs.stderr
    last = with_docs.stdout.splitlines()[-1]
    assert last.startswith("Retrieve: ") and "not offered" not in last


def test_tool_prints_the_spliced_call_the_model_would_read():
    done = cli("tool", "Calculator", "400/1400")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[Calculator(400/1400) → 0.2857]"


def test_tool_error_is_what_the_model_reads_and_exits_1():
    done = cli("tool", "Calculator", "1/0")
    assert done.returncode == 1
    assert done.stdout.strip() == "[Calculator(1/0) → Error: division by zero]"


def test_unknown_tool_and_bad_settings_exit_2_with_a_reason():
    unknown = cli("tool", "Weather", "Paris")
    assert unknown.returncode == 2
    assert "unknown tools ['Weather']" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    no_corpus = cli("tools", AGENT_SEARCH_BACKEND="local")
    assert no_corpus.returncode == 2
    assert "AGENT_SEARCH_CORPUS" in no_corpus.stderr
    assert "Traceback" not in no_corpus.stderr


def test_python_tool_runs_code_in_the_sandbox():
    done = cli("tool", "Python", "xs = [3, 1, 2]\nprint(sorted(xs))\nsum(xs)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[Python(xs = [3, 1, 2]")
    assert "[1, 2, 3]" in done.stdout
    assert done.stdout.strip().endswith("6]")


def test_local_search_over_the_squad_passages():
    done = cli(
        "tool",
        "Search",
        "Super Bowl 50 champion Denver Broncos",
        AGENT_SEARCH_BACKEND="local",
        AGENT_SEARCH_CORPUS=str(SQUAD),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('[Search("Super Bowl 50 champion Denver Broncos") → 1. ')
    assert "Super Bowl 50" in done.stdout
    assert "doc://squad-dev-00-" in done.stdout


def test_settings_map_onto_tool_options(tmp_path):
    settings = Settings(
        search_backend="local",
        search_corpus=tmp_path / "c.jsonl",
        documents=tmp_path,
        cache_dir=tmp_path / "cache",
        python_memory_mb=512,
    )
    options = settings.tool_options()
    assert options.search_backend == "local"
    assert options.search_corpus == tmp_path / "c.jsonl"
    assert options.documents == tmp_path
    assert options.index_dir == tmp_path / "cache" / "index"
    assert options.python_memory_mb == 512
