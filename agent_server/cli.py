"""`agent-server`: ask a question, prepare the model, serve the API, run one tool directly, or
measure answers with and without tools (`eval`).

Long (over 300 lines) because it is every subcommand's flags and their translation into calls;
the work itself lives in the modules it calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from agent_server import answering
from agent_server.answering import AnswerRequest
from agent_server.core import strategies
from agent_server.core.decoding import Sampling
from agent_server.core.events import CallEvent, FinalEvent, ResultEvent, TokenEvent
from agent_server.core.grammar import quote, render
from agent_server.core.prompts import Prompt
from agent_server.errors import AgentError, ConfigError
from agent_server.evals import math as evals_math
from agent_server.evals import qa as evals_qa
from agent_server.evals.runner import Progress, read_jsonl
from agent_server.runtime import build_engine, build_tools, build_webgpt, prompt_style
from agent_server.settings import Settings
from agent_server.toolformer import corpus, generate
from agent_server.toolformer.config import FinetuneConfig
from agent_server.toolformer.generate import GenerateConfig
from agent_server.webgpt.citations import references
from tools.base import invoke
from tools.registry import close_registry, prepare_tools


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-server", description=__doc__)
    parser.add_argument("--model", help="embedded model name, .gguf file, folder or hub id")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="answer one question and print the answer")
    ask.add_argument("question")
    ask.add_argument(
        "--mode",
        choices=["toolformer", "webgpt"],
        default="toolformer",
        help="webgpt: browse, quote and answer with numbered references",
    )
    ask.add_argument(
        "--strategy",
        choices=strategies.CHOICES,
        help="how to reason (default: the service's, AGENT_STRATEGY)",
    )
    ask.add_argument("--samples", type=int, help="answers to sample and vote on")
    ask.add_argument("--trace", action="store_true", help="print every call and its result")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument("--tools", nargs="*", help="tools to allow (default: all)")
    ask.add_argument("--max-calls", type=int)
    ask.add_argument("--max-new-tokens", type=int)
    ask.add_argument("--temperature", type=float, default=0.0)
    ask.add_argument("--top-p", type=float, default=1.0)
    ask.add_argument("--seed", type=int)
    ask.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")

    commands.add_parser("prepare", help="assemble, verify and convert the model once")

    commands.add_parser("tools", help="list the tools the settings enable")
    tool = commands.add_parser("tool", help="run one tool and print what the model would read")
    tool.add_argument("name", help="a tool's name, e.g. Calculator")
    tool.add_argument("argument", help="the call's argument, e.g. 400/1400")

    commands.add_parser("mcp", help="serve the tools and an `ask` tool to MCP clients over stdio")
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    model_server = commands.add_parser(
        "model-server", help="run an inference server on the model's GGUF (for the remote backend)"
    )
    model_server.add_argument("--host", default="127.0.0.1")
    model_server.add_argument("--port", type=int, default=8080)
    _add_eval_commands(commands)
    _add_toolformer_commands(commands)

    args = parser.parse_args(argv)
    overrides = {"model": args.model} if args.model else {}
    try:
        settings = Settings(**overrides)
        if args.command == "ask":
            return asyncio.run(_ask(settings, args))
        if args.command == "prepare":
            return _prepare(settings)
        if args.command == "tools":
            return _list_tools(settings)
        if args.command == "tool":
            return asyncio.run(_run_tool(settings, args.name, args.argument))
        if args.command == "mcp":
            return _mcp(settings)
        if args.command == "model-server":
            return _model_server(settings, args.host, args.port)
        if args.command == "toolformer" and args.stage == "corpus":
            return asyncio.run(_toolformer_corpus(settings, args))
        if args.command == "toolformer" and args.stage == "finetune":
            return _toolformer_finetune(settings, args)
        if args.command == "toolformer":
            return asyncio.run(_toolformer_generate(settings, args))
        if args.command == "eval":
            command = shlex.join(["agent-server", *(sys.argv[1:] if argv is None else argv)])
            return asyncio.run(_eval(settings, args, command))
        return _serve(settings, args.host, args.port)
    except (AgentError, ValidationError) as exc:
        print(f"agent-server: {exc}", file=sys.stderr)
        return 2


def _mcp(settings: Settings) -> int:
    """The MCP server over stdio: stdout is the protocol's, so nothing else may print there."""
    from agent_server import mcp_server

    tools = build_tools(settings)
    answer = mcp_server.LazyAnswer(lambda: build_engine(settings, tools=tools))
    try:
        mcp_server.build(tools, answer, settings.call_timeout_s).run("stdio")
    finally:
        answer.close()
        close_registry(tools)
    return 0


async def _ask(settings: Settings, args: argparse.Namespace) -> int:
    engine = build_engine(settings)
    try:
        asked = AnswerRequest(
            args.question,
            mode=args.mode,
            strategy=args.strategy,
            samples=args.samples,
            tools=args.tools,
            max_calls=args.max_calls,
            sampling=Sampling(
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
                stop=tuple(args.stop),
                max_new_tokens=args.max_new_tokens or settings.max_new_tokens,
            ),
        )
        # A consensus's answers are its strategies: the trace names them, not sample numbers.
        plan = answering.plan(asked, engine)
        webgpt = build_webgpt(settings, engine) if args.mode == "webgpt" else None
        events = answering.answer(asked, engine, webgpt, plan)
        members = () if plan is None else plan.strategy.voters
        first_token = True
        async for event in events:
            if args.trace and first_token and isinstance(event, TokenEvent):
                first_token = False
                age = process_age_s()
                if age is not None:
                    print(f"[first token {age:.2f} s after the process started]", file=sys.stderr)
            if args.trace and isinstance(event, CallEvent):
                called = f"{event.tool}({event.argument})" if event.argument else event.tool
                by = _answer_label(event.sample, members)
                print(f"{by}→ {called}", file=sys.stderr)
            elif args.trace and isinstance(event, ResultEvent):
                outcome = event.result if event.ok else f"error: {event.error}"
                print(f"  = {outcome}  ({event.duration_s * 1000:.0f} ms)", file=sys.stderr)
            elif isinstance(event, FinalEvent):
                _print_final(event, engine.backend.name, args)
        if args.trace:
            loaded = engine.prefixes.loaded
            print(f"[prompt cache: {loaded} prompt starts loaded from disk]", file=sys.stderr)
        if webgpt is not None:
            await webgpt.aclose()
    finally:
        engine.close()
    return 0


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), from
    /proc; None where there is none."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    # Field 22, after the command name in parentheses (which may hold spaces): start time in
    # clock ticks after boot.
    started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return max(uptime - started, 0.0)


def _answer_label(sample: int | None, members: Sequence[str]) -> str:
    if sample is None:
        return ""
    return f"[{members[sample]}] " if sample < len(members) else f"[sample {sample}] "


def _print_final(final: FinalEvent, model: str, args: argparse.Namespace) -> None:
    if args.json:
        from agent_server.http.schemas import AskResponse

        print(AskResponse.from_final(final, model).model_dump_json(indent=2))
        return
    print(final.answer)
    for reference in references(final.quotes):
        print(f"{reference} {reference.url}")
    if args.trace:
        t, u = final.timings, final.usage
        for check in final.checks:
            print(f"check: {check.kind} (stated {check.stated}, computed {check.computed})",
                  file=sys.stderr)  # fmt: skip
        if final.votes:
            tally = ", ".join(f"{v.value} ×{len(v.samples)}" for v in final.votes)
            print(f"votes: {tally}", file=sys.stderr)
        print(
            f"[{final.strategy}: {u.prompt_tokens} prompt + {u.completion_tokens} generated "
            f"tokens, {len(final.trace)} calls, {t.total_s:.1f} s]",
            file=sys.stderr,
        )


def _prepare(settings: Settings) -> int:
    started = time.perf_counter()
    engine = build_engine(settings)
    try:
        prepare_tools(engine.tools)  # e.g. Retrieve's index, so the first question need not wait
    finally:
        engine.close()
    took = time.perf_counter() - started
    ready_in_s = round(took, 1)
    print(
        json.dumps(
            {"model": engine.backend.name, "tools": list(engine.tools), "ready_in_s": ready_in_s}
        )
    )
    return 0


def _list_tools(settings: Settings) -> int:
    tools = build_tools(settings)
    try:
        for tool in tools.values():
            waiting = "" if tool.offered() else " (not offered to the model until it has documents)"
            line = f"{tool.name}: {tool.description} Example: {render(tool.name, tool.example)}"
            print(line + waiting)
    finally:
        close_registry(tools)
    return 0


async def _run_tool(settings: Settings, name: str, argument: str) -> int:
    """Exit status 0 when the tool gave a result, 1 when the model would read an error."""
    tools = build_tools(settings.model_copy(update={"tools": [name]}))
    tool = tools[name]
    try:
        outcome = await invoke(tool, argument, settings.call_timeout_s)
    finally:
        close_registry(tools)
    # Shown as the model writes it: string-argument tools quote, Calculator doesn't.
    written = quote(argument) if tool.example.startswith('"') else argument
    print(render(name, written, outcome.shown))
    print(f"({outcome.duration_s * 1000:.0f} ms)", file=sys.stderr)
    return 0 if outcome.error is None else 1


def _add_eval_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evals = commands.add_parser("eval", help="measure answers with and without tools")
    which = evals.add_subparsers(dest="eval", required=True)
    math_eval = which.add_parser(
        "math", help="word problems: each way of reasoning against the model alone (cot)"
    )
    qa_eval = which.add_parser(
        "qa", help="questions over a corpus: no tools, Retrieve, Search, WebGPT"
    )
    for sub, modes, tokens, modes_help in (
        (
            math_eval,
            evals_math.MODES,
            None,
            "comma-separated strategies, each optionally @kN (N samples vote), e.g. cot,program@k5",
        ),
        (qa_eval, evals_qa.MODES, evals_qa.MAX_NEW_TOKENS, "comma-separated"),
    ):
        sub.add_argument("--data", type=Path, required=True, help="questions, JSONL")
        sub.add_argument("--limit", type=int, default=0, help="the first N questions (0: all)")
        sub.add_argument("--workers", type=int, default=1, help="questions answered at once")
        sub.add_argument("--modes", default=",".join(modes), help=modes_help)
        sub.add_argument(
            "--max-new-tokens", type=int, default=tokens, help="default: each mode's own"
        )
        sub.add_argument("--out", type=Path, default=Path("build/eval"), help="output folder")
    math_eval.add_argument("--seed", type=int, default=0, help="the first sample's seed")
    math_eval.add_argument(
        "--resume",
        action="store_true",
        help="keep the items a stopped run with the same settings wrote to --out; answer the rest",
    )
    qa_eval.add_argument("--corpus", type=Path, required=True, help="{doc_id,title,text} JSONL")


async def _eval(settings: Settings, args: argparse.Namespace, command: str) -> int:
    """Run one eval, print its table and where its files are."""
    if args.limit < 0 or args.workers < 1 or (args.max_new_tokens or 1) < 1:
        raise ConfigError("--limit must be at least 0, --workers and --max-new-tokens at least 1")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    common = {"limit": args.limit, "workers": args.workers, "modes": modes}
    common["max_new_tokens"] = args.max_new_tokens
    if args.eval == "math":
        config = evals_math.MathConfig(**common, seed=args.seed, resume=args.resume)
        written, table = await evals_math.run(settings, args.data, config, args.out, command)
    else:
        qa_config = evals_qa.QAConfig(**common)
        written, table = await evals_qa.run(
            settings, args.data, args.corpus, qa_config, args.out, command
        )
    print(table)
    print(f"\nresults: {written.json}\ntable: {written.markdown}\nplot: {written.plot}")
    return 0


def _add_toolformer_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    toolformer = commands.add_parser("toolformer", help="teach the model to use tools")
    which = toolformer.add_subparsers(dest="stage", required=True)
    corpus_command = which.add_parser(
        "corpus", help="write worked word problems to annotate (JSONL)"
    )
    corpus_command.add_argument("--out", type=Path, default=Path("build/toolformer/corpus.jsonl"))
    corpus_command.add_argument("--size", type=int, default=300, help="how many problems")
    corpus_command.add_argument("--seed", type=int, default=0)
    corpus_command.add_argument(
        "--source",
        choices=corpus.SOURCES,
        default="one_step",
        help="one-step problems from templates, reasoning-gym's GSM8K-like ones, or GSM8K's "
        "training solutions (data/gsm8k_train.jsonl, the held-apart samples left out)",
    )
    corpus_command.add_argument(
        "--voice",
        choices=["solutions", "model"],
        default="solutions",
        help="answers: the generators' worked solutions, or the model's own right answers",
    )
    corpus_command.add_argument(
        "--workers", type=int, default=4, help="--voice model: answers at once"
    )
    generate = which.add_parser("generate", help="annotate texts with the calls that help")
    defaults = GenerateConfig()
    generate.add_argument("--corpus", type=Path, required=True, help="JSONL with a `text` each")
    generate.add_argument("--out", type=Path, default=Path("build/toolformer/generated.jsonl"))
    generate.add_argument("--tools", default="Calculator", help="comma-separated")
    generate.add_argument("--limit", type=int, default=0, help="the first N texts (0: all)")
    generate.add_argument("--top-k", type=int, default=defaults.top_k, help="positions per text")
    generate.add_argument("--tau-s", type=float, default=defaults.tau_s, help="least p('[')")
    generate.add_argument("--tau-f", type=float, default=defaults.tau_f, help="least loss gain")
    generate.add_argument("--m", type=int, default=defaults.m, help="calls sampled per position")
    generate.add_argument("--seed", type=int, default=defaults.seed)
    generate.add_argument(
        "--workers", type=int, default=4, help="texts read at once (llama.cpp batches them)"
    )

    tune = which.add_parser("finetune", help="fine-tune the model on generated texts (LoRA)")
    tuning = FinetuneConfig()
    tune.add_argument("--data", type=Path, required=True, help="`toolformer generate`'s JSONL")
    tune.add_argument("--out", type=Path, default=Path("build/toolformer/finetuned"))
    tune.add_argument(
        "--tools", default="Calculator", help="comma-separated: the tools the prompt lists"
    )
    tune.add_argument("--max-tokens", type=int, default=tuning.max_tokens, help="per text")
    tune.add_argument("--epochs", type=int, default=tuning.epochs)
    tune.add_argument("--learning-rate", type=float, default=tuning.learning_rate)
    tune.add_argument("--batch-size", type=int, default=tuning.batch_size)
    tune.add_argument("--lora-rank", type=int, default=tuning.lora_rank, help="0: full")
    tune.add_argument("--validation", type=float, default=tuning.validation, help="share held")
    tune.add_argument("--eval-every", type=int, default=tuning.eval_every, help="steps")
    tune.add_argument("--patience", type=int, default=tuning.patience)
    tune.add_argument("--seed", type=int, default=tuning.seed)


async def _toolformer_corpus(settings: Settings, args: argparse.Namespace) -> int:
    if args.size < 1 or args.workers < 1:
        raise ConfigError("--size and --workers must be at least 1")
    if args.voice == "solutions":
        written = corpus.write(args.out, corpus.worked_problems(args.size, args.seed, args.source))
        print(f"{written} texts ({args.source}, seed {args.seed}): {args.out}")
        return 0
    problems = list(corpus.problems(args.source, args.size, args.seed))
    engine = await asyncio.to_thread(build_engine, settings)
    try:
        progress = Progress(len(problems), "toolformer corpus")
        records = await corpus.own_answers(engine, problems, args.workers, progress)
    finally:
        engine.close()
    written = corpus.write(args.out, records)
    print(
        f"{written} texts: the model's right answers to {len(problems)} problems "
        f"({args.source}, seed {args.seed}): {args.out}"
    )
    return 0


async def _toolformer_generate(settings: Settings, args: argparse.Namespace) -> int:
    from agent_server.runtime import load_model
    from agent_server.toolformer.lm import LM

    if args.limit < 0 or min(args.top_k, args.m, args.workers) < 1:
        raise ConfigError("--limit must be at least 0, --top-k, --m and --workers at least 1")
    config = GenerateConfig(
        top_k=args.top_k, tau_s=args.tau_s, tau_f=args.tau_f, m=args.m, seed=args.seed
    )
    records = read_jsonl(args.corpus, args.limit, required=("text",))
    tools = build_tools(settings.model_copy(update={"tools": args.tools.split(",")}))
    try:
        backend, _ = load_model(settings)  # llama.cpp by default: 3x transformers' speed here
        try:
            progress = Progress(len(records), "toolformer generate")
            # Only a backend that batches may be read from several threads at once.
            workers = args.workers if backend.batching else 1
            summary = await generate.run(
                LM(backend), records, tools, config, args.out, progress, workers
            )
        finally:
            backend.close()
    finally:
        close_registry(tools)
    calls = ", ".join(f"{name} {n}" for name, n in summary.calls.items())
    print(
        f"{summary.annotated} of {summary.texts} texts annotated ({calls}) in "
        f"{summary.seconds / 60:.1f} min: {args.out}"
    )
    return 0


def _toolformer_finetune(settings: Settings, args: argparse.Namespace) -> int:
    from agent_server.backends.transformers import TransformersBackend
    from agent_server.models import resolve
    from agent_server.toolformer import finetune

    config = FinetuneConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        lora_rank=args.lora_rank,
        validation=args.validation,
        eval_every=args.eval_every,
        patience=args.patience,
        max_tokens=args.max_tokens,
        seed=args.seed,
    )
    if min(config.epochs, config.batch_size, config.eval_every, config.patience) < 1:
        raise ConfigError("--epochs, --batch-size, --eval-every and --patience: at least 1")
    records = read_jsonl(args.data, required=("augmented",))
    source = resolve(settings.model, settings.cache_dir)
    style = prompt_style(settings, source)
    tools = build_tools(settings.model_copy(update={"tools": args.tools.split(",")}))
    close_registry(tools)  # only their names and descriptions are needed: nothing runs

    def load() -> TransformersBackend:
        # fp32: training's small updates vanish in bf16.
        return TransformersBackend.load(source, settings.cache_dir, "float32", settings.threads)

    base = load()
    prompt = Prompt(style)

    def frame(question: str) -> str:  # what the service writes before the model's answer
        return prompt.render(base, question, list(tools.values())).text

    try:
        state = finetune.finetune(
            base.model,
            base.tokenizer,
            records,
            args.out,
            config,
            lambda total: Progress(total, "toolformer finetune"),
            frame,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    fresh = load()  # the best weights go into an untouched copy
    folder = finetune.export(fresh.model, base.tokenizer, args.out, config)
    stopped = "stopped early" if state.stopped_early else "all epochs"
    print(
        f"{state.step} steps ({stopped}); best held-back loss {state.best_loss:.4f} at step "
        f"{state.best_step}. Serve it with AGENT_MODEL={folder}"
    )
    return 0


def _model_server(settings: Settings, host: str, port: int) -> int:
    """Become llama-cpp-python's server (exec: signals reach it directly)."""
    from agent_server.model_server import command
    from agent_server.models import resolve

    source = resolve(settings.model, settings.cache_dir)
    if not source.gguf_file:
        raise ConfigError(f"the model server needs a GGUF model, not {settings.model!r}")
    gguf = Path(source.location) / source.gguf_file
    argv = command(gguf, source.name, host, port, settings.threads)
    print(f"serving {source.name} on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from agent_server.http.app import create_app

    # One JSON line per request from our own access log (with its request id), not uvicorn's.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    host, port = host or settings.host, port or settings.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(
        f"agent-server: the chat UI at http://{shown}:{port}/ and the API at /v1 (docs: /docs), "
        f'once the model has loaded (/readyz). Try: "What is 1234 * 5678?"',
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
