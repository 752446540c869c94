"""The benchmark's tables (Markdown), each gateway figure beside the floor and issue 17's target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

FLOOR = "bare"


@dataclass(frozen=True)
class Metric:
    """One row: where the figure lives, how it compares with the floor, and the target (None: reported only)."""

    label: str
    key: str
    target: str
    compare: str  # "ratio", "delta" or "absolute"
    ok: Callable[[float], bool] | None
    digits: int = 0


METRICS = (
    Metric("requests/s, 32 connections", "rps_32", "≥ 0.75 × floor", "ratio", lambda r: r >= 0.75),
    # CPU time of the process under test per request: the figure least bent by a busy machine.
    Metric("CPU µs/request, 32 connections", "cpu_us_32", "≤ 1.33 × floor (⇔ 0.75× req/s)", "ratio",
           lambda r: r <= 1 / 0.75),
    Metric("p99 ms, 32 connections", "p99_32", "≤ 1.5 × floor", "ratio", lambda r: r <= 1.5, 2),
    Metric("p50 ms, 1 connection", "p50_1", "≤ floor + 0.10 ms", "delta", lambda d: d <= 0.10, 3),
    Metric("start-up s (spawn → first 200)", "startup_s", "≤ 1.0 s", "absolute", lambda v: v <= 1.0, 2),
    Metric("RSS MiB after the load", "rss_mib", "≤ 100 MiB", "absolute", lambda v: v <= 100, 0),
    Metric("RSS MiB after opening the web page (/ui/, /api/providers …)", "rss_page_mib", "≤ 100 MiB", "absolute",
           lambda v: v <= 100, 0),
    Metric("RSS MiB after one translated (Anthropic) request (the gateway's process; its translation worker's "
           "below)", "rss_translated_mib", "≤ 200 MiB", "absolute",
           lambda v: v <= 200, 0),
    Metric("requests/s, 128 connections", "rps_128", "reported", "ratio", None),
    Metric("stream: time to first chunk p50 ms, 1 connection", "ttfc_p50", "reported", "delta", None, 3),
)


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """One target's runs as one: each numeric figure's median; anything else (raw wrk output, profiles) from
    the first run."""
    merged = dict(runs[0])
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(first, int | float) and not isinstance(first, bool) and all(
                isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(v for v in values if isinstance(v, int | float))
    merged["runs"] = len(runs)
    return merged


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def verdict(metric: Metric, value: float | None, floor: float | None) -> bool | None:
    """Whether a gateway's figure meets the target; None when there is no target or nothing to compare."""
    if metric.ok is None or value is None:
        return None
    if metric.compare == "ratio":
        return metric.ok(value / floor) if floor else None
    if metric.compare == "delta":
        return metric.ok(value - floor) if floor is not None else None
    return metric.ok(value)


def cell(metric: Metric, value: float | None, floor: float | None, *, is_floor: bool) -> str:
    """A figure, with its ratio or difference to the floor."""
    if value is None:
        return "–"
    text = _num(value, metric.digits)
    if is_floor:
        return text
    if metric.compare == "ratio" and floor:
        return f"{text} ({value / floor:.2f}×)"
    if metric.compare == "delta" and floor is not None:
        return f"{text} ({value - floor:+.{max(metric.digits, 2)}f})"
    return text


def met(metric: Metric, results: dict[str, dict[str, object]], names: list[str]) -> str:
    """✓ when every gateway meets the target, else ✗ naming those that miss it; – when nothing was judged."""
    floor = _f(results.get(FLOOR, {}).get(metric.key))
    verdicts = {n: verdict(metric, _f(results[n].get(metric.key)), floor) for n in names if n != FLOOR}
    judged = {n: v for n, v in verdicts.items() if v is not None}
    if not judged:
        return "–"
    missed = [n for n, v in judged.items() if not v]
    return "✓" if not missed else "✗ " + ", ".join(missed)


def main_table(results: dict[str, dict[str, object]]) -> list[str]:
    """Metrics as rows, targets (floor first) as columns, then whether issue 17's target is met."""
    names = [n for n in results if n == FLOOR] + [n for n in results if n != FLOOR]
    floor = results.get(FLOOR, {})
    lines = ["| metric | target | " + " | ".join(names) + " | met? |",
             "|---|---|" + "---:|" * len(names) + "---|"]
    for m in METRICS:
        cells = [cell(m, _f(results[n].get(m.key)), _f(floor.get(m.key)), is_floor=n == FLOOR) for n in names]
        lines.append(f"| {m.label} | {m.target} | " + " | ".join(cells) + f" | {met(m, results, names)} |")
    extra = (
        ("errors (non-2xx + socket), all loads", lambda r: str(r.get("errors", "–"))),
        ("web page or translated request not 200", lambda r: str(r.get("page_errors", "–"))),
        ("translated request, first (starts the worker, imports litellm) s",
         lambda r: str(r.get("translated_s", "–"))),
        ("RSS MiB of the translation worker (litellm's process) after it, not counted above",
         lambda r: str(r.get("rss_worker_mib", "–"))),
        ("CPU0 / CPU1 busy %, 32 connections", lambda r: "{} / {}".format(*r.get("busy_32", ("–", "–")))),
        ("litellm imported by the load", lambda r: {True: "yes ✗", False: "no ✓"}.get(bool(r["litellm_imported"]))
         if "litellm_imported" in r else "–"),
    )
    for label, show in extra:
        lines.append(f"| {label} | | " + " | ".join(show(results[n]) for n in names) + " | |")
    return lines


def _f(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def long_run_table(rows: dict[str, dict[str, float]]) -> list[str]:
    """RSS after 100k and 200k requests: ≤ 100 MiB and no growth in between."""
    lines = ["| target | requests | RSS MiB at half | RSS MiB at end | growth MiB | target |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        growth = r["rss_end_mib"] - r["rss_half_mib"]
        ok = r["rss_end_mib"] <= 100 and growth <= 1.0
        lines.append(f"| {name} | {r['requests']:,.0f} | {r['rss_half_mib']:.1f} | {r['rss_end_mib']:.1f} | "
                     f"{growth:+.1f} | ≤ 100 MiB, no growth {'✓' if ok else '✗'} |")
    return lines


def workers_table(rows: dict[str, dict[str, float]], workers: int) -> list[str]:
    """Requests/s of one worker against N workers on the same CPUs."""
    lines = [f"| target | connections | 1 worker req/s | {workers} workers req/s | ratio (target ≥ 1.8) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        for conns in ("32", "128"):
            one, many = r.get(f"rps_{conns}_1"), r.get(f"rps_{conns}_n")
            if one and many:
                ratio = many / one
                verdict = "✓" if ratio >= 1.8 else "✗"
                lines.append(f"| {name} | {conns} | {one:,.0f} | {many:,.0f} | {ratio:.2f} {verdict} |")
    return lines
