"""HTML for notebooks: a :class:`~lmq.result.Result` as its prompt with each hole's text
highlighted, a legend, distributions as bars, and the run's counts.

Everything is inline-styled (notebook front ends and static renderers drop ``<style>``
blocks inconsistently) and every piece of text is escaped. Hovering a highlighted value
shows its hole's name, constraint, token count and log-probability; the legend shows the
same for every hole.
"""

from __future__ import annotations

import html
import math
from typing import Any

from lmq.result import Result

# Pale colours that keep dark text readable, one per hole in order of appearance.
PALETTE = ("#ffe08a", "#b5e6ff", "#c8f2b8", "#ffc9de", "#dcd0ff", "#ffd6a8", "#c2f0e8",
           "#f0e0c0")
BOX = ("font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; "
       "font-size: 13px; line-height: 1.5; color: #1a1a1a;")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _colors(result: Result) -> dict[str, str]:
    names: list[str] = []
    for _, hole in result.segments:
        if hole is not None and hole not in names:
            names.append(hole)
    for name in [*result.variables, *result.distribution]:
        if name not in names:
            names.append(name)
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def hole_summary(result: Result, name: str) -> dict[str, Any]:
    """What the hover and the legend say about hole ``name``."""
    logprobs = result.logprobs.get(name)
    summary: dict[str, Any] = {"name": name,
                               "constraint": result.constraints.get(name) or "(none)"}
    if logprobs is not None:
        summary["tokens"] = len(logprobs)
        summary["logprob"] = sum(logprobs)
    return summary


def _tooltip(summary: dict[str, Any]) -> str:
    lines = [summary["name"], f"constraint: {summary['constraint']}"]
    if "tokens" in summary:
        lines.append(f"tokens: {summary['tokens']}")
        lines.append(f"log-probability: {summary['logprob']:.3f}")
    return "\n".join(lines)


def _prompt_html(result: Result, colors: dict[str, str]) -> str:
    segments = result.segments or [(result.prompt, None)]
    last = {hole: i for i, (_, hole) in enumerate(segments) if hole is not None}
    pieces = []
    for i, (text, hole) in enumerate(segments):
        if hole is None:
            pieces.append(_e(text))
            continue
        summary = hole_summary(result, hole)
        if last[hole] != i:  # an earlier value of a hole filled again: no token counts
            summary = {"name": f"{hole} (earlier value)", "constraint": summary["constraint"]}
        pieces.append(
            f'<span class="lmq-hole" data-hole="{_e(hole)}" title="{_e(_tooltip(summary))}" '
            f'style="background: {colors.get(hole, PALETTE[0])}; border-radius: 3px; '
            f'padding: 0 1px; box-shadow: inset 0 -2px 0 rgba(0,0,0,0.25);">{_e(text)}</span>')
    return (f'<pre class="lmq-prompt" style="{BOX} white-space: pre-wrap; margin: 0 0 8px 0; '
            f'padding: 8px; background: #fafafa; border: 1px solid #e0e0e0; '
            f'border-radius: 4px;">{"".join(pieces)}</pre>')


def _legend_html(result: Result, colors: dict[str, str]) -> str:
    rows = []
    cell = "padding: 2px 8px; text-align: left; vertical-align: top;"
    for name in result.variables:
        summary = hole_summary(result, name)
        tokens = summary.get("tokens", "")
        logprob = f"{summary['logprob']:.3f}" if "logprob" in summary else ""
        value = repr(result.variables[name])
        if len(value) > 80:
            value = value[:79] + "…"
        rows.append(
            f'<tr><td style="{cell}"><span style="background: {colors.get(name, PALETTE[0])}; '
            f'padding: 0 4px; border-radius: 3px;">{_e(name)}</span></td>'
            f'<td style="{cell}">{_e(value)}</td><td style="{cell}">'
            f'{_e(summary["constraint"])}</td><td style="{cell}">{tokens}</td>'
            f'<td style="{cell}">{logprob}</td></tr>')
    if not rows:
        return ""
    head = "".join(f'<th style="{cell} border-bottom: 1px solid #ccc; white-space: nowrap;">'
                   f'{h}</th>'
                   for h in ("hole", "value", "constraint", "tokens", "log-prob"))
    return (f'<table class="lmq-legend" style="{BOX} border-collapse: collapse; '
            f'margin: 4px 0;"><tr>{head}</tr>{"".join(rows)}</table>')


def _distribution_html(result: Result, colors: dict[str, str]) -> str:
    blocks = []
    for name, probabilities in result.distribution.items():
        rows = []
        for value, p in sorted(probabilities.items(), key=lambda item: -item[1]):
            width = max(0.0, min(100.0, p * 100 if math.isfinite(p) else 0.0))
            rows.append(
                f'<div style="display: flex; align-items: center; gap: 8px;">'
                f'<span style="min-width: 10em; white-space: pre;">{_e(repr(value))}</span>'
                f'<span class="lmq-bar" style="display: inline-block; width: 200px; '
                f'background: #eee; border-radius: 2px;"><span style="display: block; '
                f'width: {width:.1f}%; height: 10px; background: '
                f'{colors.get(name, "#888")}; box-shadow: inset 0 0 0 1px rgba(0,0,0,0.2);">'
                f'</span></span><span>{p:.3f}</span></div>')
        blocks.append(f'<div class="lmq-distribution" style="{BOX} margin: 4px 0;">'
                      f'<div><b>distribution of {_e(name)}</b></div>{"".join(rows)}</div>')
    return "".join(blocks)


def _footer_html(result: Result) -> str:
    parts = []
    if result.return_value is not None:
        parts.append(f"return value: {_e(repr(result.return_value))}")
    parts.append(f"score: {result.score:.3f}")
    for key in ("forward_passes", "prompt_tokens", "generated_tokens", "forced_tokens"):
        if key in result.stats:
            parts.append(f"{key.replace('_', ' ')}: {result.stats[key]}")
    return (f'<div class="lmq-stats" style="{BOX} color: #555; font-size: 12px;">'
            f'{" · ".join(parts)}</div>')


def result_html(result: Result) -> str:
    """The whole HTML view of one result."""
    colors = _colors(result)
    return (f'<div class="lmq-result">{_prompt_html(result, colors)}'
            f'{_legend_html(result, colors)}{_distribution_html(result, colors)}'
            f'{_footer_html(result)}</div>')


def results_html(results: list[Any]) -> str:
    """Several results (samples, beams): each under a small heading."""
    blocks = []
    for i, result in enumerate(results):
        blocks.append(f'<div style="{BOX} font-weight: bold; margin-top: 6px;">'
                      f'result {i + 1}</div>')
        if isinstance(result, Result):
            blocks.append(result_html(result))
        else:
            blocks.append(f'<pre style="{BOX} color: #b00020;">{_e(result)}</pre>')
    return "".join(blocks)
