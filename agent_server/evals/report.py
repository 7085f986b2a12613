"""An eval's outputs: a JSON result file, a Markdown table and a PNG bar chart comparing modes.

The JSON file holds what reproduces and checks the figures: the eval, the model, the git commit
(and whether the checkout had uncommitted changes), the command, the settings, the summary per
mode and the per-item log it was computed from. matplotlib is imported only to draw the chart
(`pip install -e '.[eval]'`).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent_server.errors import ConfigError

Summary = Mapping[str, Mapping[str, float | None]]
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Column:
    """A summary figure as the table shows it: a share (as %), seconds, a count or a p-value."""

    key: str
    header: str
    kind: Literal["share", "seconds", "count", "p"]

    def format(self, value: float | None) -> str:
        if value is None:
            return "–"
        if self.kind == "share":
            return f"{100 * value:.1f}%"
        if self.kind == "seconds":
            return f"{value:.2f}"
        if self.kind == "p":
            return "< 0.0001" if value < 1e-4 else f"{value:.4f}"
        return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


@dataclass(frozen=True)
class Written:
    json: Path
    markdown: Path
    plot: Path


def git_commit(folder: Path = _REPO) -> tuple[str, bool | None]:
    """The checkout's commit and whether it has uncommitted changes; ("unknown", None) outside
    a git checkout (an installed package) or without git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return head, bool(status.strip())


def result_file(
    name: str,
    model: str,
    command: str,
    settings: Mapping[str, Any],
    summary: Summary,
    items: Sequence[Mapping[str, Any]],
    took_s: float,
    source: tuple[str, bool | None] | None = None,
) -> dict[str, Any]:
    """The JSON result: provenance first, then the summary, then the items it comes from.

    `source` is `git_commit()` as it was when the run started (the code that ran; the checkout
    may have moved on during an hour's run); None reads it now.
    """
    commit, dirty = source if source is not None else git_commit()
    return {
        "eval": name,
        "model": model,
        "commit": commit,
        "dirty": dirty,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "took_s": round(took_s, 1),
        "settings": dict(settings),
        "summary": {mode: dict(row) for mode, row in summary.items()},
        "items": [dict(item) for item in items],
    }


def markdown_table(summary: Summary, columns: Sequence[Column]) -> str:
    """One row per mode, one column per figure."""
    lines = [
        "| mode | " + " | ".join(c.header for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for mode, row in summary.items():
        cells = " | ".join(c.format(row.get(c.key)) for c in columns)
        lines.append(f"| {mode} | {cells} |")
    return "\n".join(lines)


def plot(summary: Summary, bars: Sequence[Column], path: Path, title: str) -> Path:
    """A PNG: the share figures of `bars` grouped by mode, and each mode's mean latency."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("the chart needs matplotlib: pip install -e '.[eval]'") from exc

    modes = list(summary)
    figure = Figure(figsize=(4 + 1.6 * len(modes), 4.2), layout="constrained")
    shares, latency = figure.subplots(1, 2, width_ratios=[3, 1])
    width = 0.8 / max(1, len(bars))
    for n, column in enumerate(bars):
        xs = [m + (n - (len(bars) - 1) / 2) * width for m in range(len(modes))]
        values = [summary[mode].get(column.key) for mode in modes]
        drawn = [(x, 100 * v) for x, v in zip(xs, values, strict=True) if v is not None]
        if not drawn:
            continue
        rects = shares.bar([x for x, _ in drawn], [v for _, v in drawn], width, label=column.header)
        shares.bar_label(rects, fmt="%.0f", fontsize=8)
    shares.set_xticks(range(len(modes)), modes)
    shares.set_ylim(0, 122)  # room above 100% for the legend
    shares.set_yticks(range(0, 101, 20))
    shares.set_ylabel("%")
    shares.legend(loc="upper left", fontsize=8, ncols=min(3, len(bars)))
    shares.set_title(title, fontsize=10, loc="left")
    seconds = [summary[mode].get("mean_latency_s") or 0.0 for mode in modes]
    rects = latency.bar(range(len(modes)), seconds, 0.6, color="grey")
    latency.bar_label(rects, fmt="%.1f", fontsize=8)
    latency.set_xticks(range(len(modes)), modes, rotation=30, ha="right")
    latency.set_ylabel("mean seconds per question")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write(
    out_dir: Path,
    result: Mapping[str, Any],
    columns: Sequence[Column],
    bars: Sequence[Column],
    title: str,
) -> Written:
    """`<eval>.json`, `<eval>.md` and `<eval>.png` in `out_dir` (replacing an earlier run's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = str(result["eval"])
    paths = Written(out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png")
    paths.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", "utf-8")
    table = markdown_table(result["summary"], columns)
    provenance = f"model {result['model']}, commit {str(result['commit'])[:12]}"
    if result["dirty"]:
        provenance += " (with uncommitted changes)"
    took = f"{result['took_s']:.0f} s"
    markdown = f"{title}; {provenance}, {took}\n\n{table}\n\n`{result['command']}`\n"
    paths.markdown.write_text(markdown, "utf-8")
    plot(result["summary"], bars, paths.plot, title)
    return paths
