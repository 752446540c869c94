"""`make bench`: the gateway on SQLite and PostgreSQL against the bare aiohttp floor, on one fake upstream.

    python -m benchmarks.run [--targets bare,sqlite,postgres] [--seconds 6] [--long-run] [--workers 2] [--profile]

Layout: the process under test runs alone on --gateway-cpus (taskset, default CPU 0); the fake upstream, wrk and
the stream probe share --load-cpus (default CPU 1). Everything listens on 127.0.0.1 and stops by itself.
Prints one Markdown table and writes it, with every raw figure, to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from benchmarks import hotpath, load, procs, report
from benchmarks.procs import MODEL, TRANSLATED_MODEL, WEB_PAGE

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
GATEWAYS = ("sqlite", "postgres")
LITELLM_IMPORT = re.compile(r"\|\s+litellm$", re.MULTILINE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="bare,sqlite,postgres", help="comma-separated: bare, sqlite, postgres")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each measured wrk run")
    p.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up before measuring, seconds")
    p.add_argument("--stream-requests", type=int, default=100, help="streams timed for time to first chunk")
    p.add_argument("--chunk-delay", type=float, default=0.005, help="upstream gap between stream events, s")
    p.add_argument("--gateway-cpus", default="0", help="taskset CPU list of the process under test")
    p.add_argument("--load-cpus", default="1", help="taskset CPU list of the upstream, wrk and probes")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure every target this many times, interleaved; the table shows each figure's median")
    p.add_argument("--long-run", action="store_true", help="memory mode: RSS after --long-requests and half")
    p.add_argument("--long-requests", type=int, default=200_000)
    p.add_argument("--workers", type=int, default=0,
                   help="also compare `serve --workers N` with one worker (PostgreSQL target only)")
    p.add_argument("--workers-cpus", default="0,1", help="taskset CPU list of the gateway in the workers run")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway under load: top frames")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--postgres-url", default=os.environ.get("LLM_GATEWAY_BENCH_POSTGRES_URL")
                   or os.environ.get("LLM_GATEWAY_TEST_DATABASE_URL")
                   or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server (any database on it); the run makes its own database and drops it")
    p.add_argument("--src", type=Path, default=REPO / "src",
                   help="the gateway source tree to measure (another worktree's src/ for before/after)")
    p.add_argument("--out", type=Path, help="results directory (default /tmp/llm-gateway-bench/<time>)")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - {"bare", *GATEWAYS}
    if unknown:
        p.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    return args


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any LLM_GATEWAY_* a developer may have set, plus EXTRA."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY_")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False")
    env.update(extra)
    return env


class Bench:
    """One run: the fake upstream, then each target started, measured and stopped in turn."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.upstream_key = "sk-bench-" + secrets.token_hex(12)
        self.upstream_port = procs.free_port()
        self.upstream_url = f"http://127.0.0.1:{self.upstream_port}/v1"
        self.anthropic_key = "sk-ant-bench-" + secrets.token_hex(12)
        self.anthropic_port = procs.free_port()
        self.wrap: list[str] = []  # a command the gateway runs under (benchmarks.icount: valgrind)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    @contextmanager
    def upstream(self) -> Iterator[procs.Proc]:
        """The project's fake OpenAI upstream (tests/fakes/openai_upstream.py), standalone, on the load CPUs, and
        its fake Anthropic one for the translated request."""
        cmd = [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(self.upstream_port),
               "--key", self.upstream_key, "--chunk-delay", str(self.args.chunk_delay)]
        env = clean_env(PYTHONPATH=f"{REPO}:{REPO / 'src'}")
        proc = procs.start("upstream", cmd, cpus=self.args.load_cpus, log_dir=self.out, cwd=REPO, env=env)
        claude = procs.start("anthropic", [sys.executable, "-m", "tests.fakes.anthropic_upstream", "--port",
                                           str(self.anthropic_port), "--key", self.anthropic_key],
                             cpus=self.args.load_cpus, log_dir=self.out, cwd=REPO, env=env)
        try:
            procs.wait_first_200(proc, self.upstream_port, self.upstream_key, "gpt-4o-mini")
            yield proc
        finally:
            proc.stop()
            claude.stop()

    @contextmanager
    def target(self, name: str, *, workers: int = 1, cpus: str | None = None,
               label: str | None = None) -> Iterator[tuple[procs.Proc, int, str]]:
        """Prepare and start NAME; yields (process, port, caller token); stops it and drops its database."""
        port, label = procs.free_port(), label or name
        cpus = cpus or self.args.gateway_cpus
        drop = None
        if name == "bare":
            token = "bench-" + secrets.token_hex(16)
            cmd = [*self.wrap, sys.executable, "-m", "benchmarks.bare_proxy", "--port", str(port), "--upstream",
                   self.upstream_url]
            env = clean_env(PYTHONPATH=str(REPO), BARE_UPSTREAM_KEY=self.upstream_key, BARE_TOKEN=token)
            cwd = REPO
        else:
            cwd = self.out / label
            cwd.mkdir(exist_ok=True)
            prepared = self.prepare(name, cwd)
            drop = prepared["drop"]
            token = prepared["token"]
            # -X importtime logs every import to stderr: the log then shows whether litellm was ever imported.
            cmd = [*self.wrap, sys.executable, "-X", "importtime", "-m", "gateway", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers)]
            env = clean_env(
                PYTHONPATH=str(self.args.src), LLM_GATEWAY_DATABASE_URL=prepared["database_url"],
                LLM_GATEWAY_ENCRYPTION_KEYS=prepared["encryption_keys"], LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS="true",
                LLM_GATEWAY_ACCESS_LOG="false", LLM_GATEWAY_LOG_LEVEL="WARNING", LLM_GATEWAY_DATA_DIR=str(cwd),
            )
        proc = procs.start(label, cmd, cpus=cpus, log_dir=self.out, env=env, cwd=cwd)
        try:
            yield proc, port, token
        finally:
            proc.stop()
            if drop:
                subprocess.run([sys.executable, "-c", "import sys; from benchmarks.prepare import drop_postgres; "
                                "drop_postgres(sys.argv[1], sys.argv[2])", self.args.postgres_url, drop],
                               cwd=REPO, env=self.src_env(), check=True, timeout=60)

    def src_env(self, **extra: str) -> dict[str, str]:
        """The environment of a child that imports the measured gateway (and these benchmarks)."""
        return clean_env(PYTHONPATH=f"{self.args.src}:{REPO}", **extra)

    def prepare(self, name: str, directory: Path) -> dict[str, str]:
        """A migrated database with the caller and `bench-model`, made by the measured tree's own code."""
        where = str(directory) if name == "sqlite" else self.args.postgres_url
        done = subprocess.run([sys.executable, "-m", "benchmarks.prepare", name, where], cwd=REPO,
                              capture_output=True, text=True, timeout=120,
                              env=self.src_env(BENCH_UPSTREAM_URL=self.upstream_url,
                                               BENCH_UPSTREAM_KEY=self.upstream_key,
                                               BENCH_ANTHROPIC_URL=f"http://127.0.0.1:{self.anthropic_port}",
                                               BENCH_ANTHROPIC_KEY=self.anthropic_key))
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"preparing {name} failed: {last}\n{done.stderr[-2000:]}")
        prepared: dict[str, str] = json.loads(done.stdout)
        return prepared

    def wrk(self, proc: procs.Proc, port: int, token: str, conns: int, tag: str, *, seconds: float | None = None,
            requests: int | None = None) -> load.WrkResult:
        return load.wrk(port, token, MODEL, conns=conns, seconds=seconds or self.args.seconds, requests=requests,
                        cpus=self.args.load_cpus, out=self.out / f"{proc.name}_{tag}.json", watch_pid=proc.pid)

    def measure(self, name: str) -> dict[str, object]:
        """The main table's figures for one target."""
        with self.target(name) as (proc, port, token):
            startup = round(procs.wait_first_200(proc, port, token, MODEL), 3)
            rss_idle = round(procs.rss_kib(proc.pid) / 1024, 1)
            self.log(f"{name}: first 200 after {startup} s, RSS {rss_idle} MiB")
            self.wrk(proc, port, token, 128, "warmup", seconds=self.args.warmup)
            runs = {c: self.wrk(proc, port, token, c, f"c{c}") for c in (1, 32, 128)}
            for c, w in runs.items():
                self.log(f"{name} c={c}: {w.rps} req/s p50 {w.p50_ms} ms p99 {w.p99_ms} ms errors {w.errors} "
                         f"CPU µs/request {w.cpu_us_per_request} busy {w.busy_pct}")
            stream = load.stream_ttfc(port, token, MODEL, requests=self.args.stream_requests,
                                      cpus=self.args.load_cpus, out=self.out / f"{name}_stream.json")
            self.log(f"{name} stream: {stream}")
            r: dict[str, object] = {
                "startup_s": startup, "rss_idle_mib": rss_idle, "rps_32": runs[32].rps, "rps_128": runs[128].rps,
                "cpu_us_32": runs[32].cpu_us_per_request, "p50_1": runs[1].p50_ms, "p99_32": runs[32].p99_ms,
                "ttfc_p50": stream.get("ttfc_p50_ms"), "rss_mib": round(procs.rss_kib(proc.pid) / 1024, 1),
                "errors": sum(w.errors for w in runs.values()) + int(stream.get("errors", 0)),
                "busy_32": [runs[32].busy_pct.get("cpu0"), runs[32].busy_pct.get("cpu1")],
                "wrk": {c: dataclasses.asdict(w) for c, w in runs.items()}, "stream": stream,
            }
            if name != "bare":
                r["litellm_imported"] = bool(LITELLM_IMPORT.search(proc.log.read_text(errors="replace")))
                r.update(self.page_and_translation(name, proc, port, token))
            if self.args.profile:
                r["profile"] = hotpath.record(proc.pid, port, token, MODEL, seconds=self.args.profile_seconds,
                                              conns=32, cpus=self.args.load_cpus, out_dir=self.out,
                                              name=f"{name}_profile")
            return r

    def page_and_translation(self, name: str, proc: procs.Proc, port: int, token: str) -> dict[str, object]:
        """RSS after the web page is opened once (what it loads), then after one translated (Anthropic) request."""
        statuses = {path: procs.get_status(port, path, token) for path in WEB_PAGE}
        rss_page = round(procs.rss_kib(proc.pid) / 1024, 1)
        started = time.perf_counter()
        translated = procs.post_status(port, token, TRANSLATED_MODEL, timeout=120)
        seconds = round(time.perf_counter() - started, 2)
        # litellm lives in the translation worker, a child process: its memory is not the gateway's, nor free.
        workers = procs.translation_workers(proc.pid)
        rss_translated = round(procs.rss_kib(proc.pid, without=workers) / 1024, 1)
        rss_worker = round(sum(procs.rss_kib(w) for w in workers) / 1024, 1)
        self.log(f"{name}: web page {statuses}, RSS {rss_page} MiB; translated request HTTP {translated} in "
                 f"{seconds} s, RSS {rss_translated} MiB (+ translation worker {rss_worker} MiB, "
                 f"{len(workers)} process)")
        failed = sum(1 for status in (*statuses.values(), translated) if status != 200)
        return {"rss_page_mib": rss_page, "rss_translated_mib": rss_translated, "rss_worker_mib": rss_worker,
                "translated_s": seconds, "page_errors": failed}

    def long_run(self, name: str) -> dict[str, float]:
        """RSS of a fresh process after half of --long-requests and after all of them (32 connections)."""
        half = self.args.long_requests // 2
        with self.target(name, label=f"{name}_long") as (proc, port, token):
            procs.wait_first_200(proc, port, token, MODEL)
            rss = []
            for part in ("first", "second"):
                w = self.wrk(proc, port, token, 32, part, seconds=3600, requests=half)
                rss.append(procs.rss_kib(proc.pid) / 1024)
                self.log(f"{name} long run, {part} half: {w.requests} requests at {w.rps} req/s, "
                         f"RSS {rss[-1]:.1f} MiB")
            return {"requests": 2 * half, "rss_half_mib": rss[0], "rss_end_mib": rss[1]}

    def workers(self, name: str, n: int) -> dict[str, float]:
        """Requests/s with one worker and with N, the gateway on --workers-cpus."""
        row: dict[str, float] = {}
        for count, suffix in ((1, "1"), (n, "n")):
            label = f"{name}_workers{count}"
            with self.target(name, workers=count, cpus=self.args.workers_cpus, label=label) as (proc, port, token):
                procs.wait_first_200(proc, port, token, MODEL)
                self.wrk(proc, port, token, 128, "warmup", seconds=self.args.warmup)
                for conns in (32, 128):
                    w = self.wrk(proc, port, token, conns, f"c{conns}")
                    row[f"rps_{conns}_{suffix}"] = w.rps
                    self.log(f"{label} c={conns}: {w.rps} req/s, processes {len(procs.tree(proc.pid))}")
        return row


def machine() -> str:
    """One line naming the machine, for the benchmark results (docs/benchmarks.md)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers, which stop every process we started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    load.require_wrk()
    args.out = args.out or Path("/tmp/llm-gateway-bench") / datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    header = (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}; {machine()}; load average before: "
              f"{procs.load_average()}; gateway on CPU {args.gateway_cpus}, upstream + wrk on CPU {args.load_cpus}; "
              f"{args.seconds:g} s per wrk run; wrk {load.wrk_version()}")
    bench.log(header)
    results: dict[str, dict[str, object]] = {}
    long_rows: dict[str, dict[str, float]] = {}
    worker_rows: dict[str, dict[str, float]] = {}
    failures: list[str] = []

    def attempt(name: str, what: str, work: Callable[[], T], into: dict[str, T]) -> None:
        # A target that fails (not ready, crashed) is reported, and the others still run.
        try:
            into[name] = work()
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            bench.log(f"{name} {what} FAILED: {exc}")
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failures.append(f"{name} {what}: FAILED: {first}")

    with bench.upstream():
        rounds: dict[str, list[dict[str, object]]] = {name: [] for name in args.targets}
        for round_ in range(args.repeat):
            for name in args.targets:
                measured: dict[str, dict[str, object]] = {}
                attempt(name, f"round {round_ + 1}", partial(bench.measure, name), measured)
                rounds[name] += measured.values()
        results = {name: report.median_of(runs) for name, runs in rounds.items() if runs}
        if args.long_run:
            for name in args.targets:
                attempt(name, "long run", partial(bench.long_run, name), long_rows)
        if args.workers > 1:
            # Only PostgreSQL: serve refuses several workers on SQLite (no cross-process change path there).
            for name in (t for t in args.targets if t == "postgres"):
                attempt(name, "workers", partial(bench.workers, name, args.workers), worker_rows)
    lines = [f"Measured {header}; load average after: {procs.load_average()}"
             + (f"; medians of {args.repeat} interleaved runs" if args.repeat > 1 else ""), "",
             *report.main_table(results)]
    if long_rows:
        lines += ["", "Long run (fresh process, 32 connections):", "", *report.long_run_table(long_rows)]
    if worker_rows:
        lines += ["", f"`serve --workers {args.workers}` against one worker, gateway on CPUs {args.workers_cpus} "
                  f"(upstream + wrk on {args.load_cpus}):", "", *report.workers_table(worker_rows, args.workers)]
    lines += [line for failure in failures for line in ("", failure)]
    for name, r in results.items():
        if "profile" in r:
            lines += ["", f"Profile of {name} (py-spy, 32 connections):", "", *r["profile"]]  # type: ignore[misc]
    text = "\n".join(lines)
    print("\n" + text)
    (args.out / "report.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    bench.log(f"results in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
