"""`make bench`: run every benchmark once and regenerate docs/performance.md and its plots.

    python benchmarks/run_all.py [--only polling]

Writes benchmarks/results.json (raw figures), docs/img/triggerer-scaling.png,
docs/img/polling-schedules.png and docs/performance.md. Every target is judged on ratios or limits
from one run. ``--only polling`` reruns the polling benchmark alone and keeps the other figures
from results.json (the polling section then states its own date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import import_cost
import polling
import transfer_memory
import triggerer
import worker_slots

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1000, 10000)
# One new connection per poll: beyond this the loopback's ephemeral ports run out (TIME_WAIT).
HTTP_MAX_TRIGGERS = 1000
SWEEP = {"interval": 10, "duration": 25}
HEADLINE = {"triggers": 1000, "interval": 2, "duration": 15}
# 1,000 generations of minutes each, compressed 8× so that the four schedules take about 4 minutes,
# on each workload the targets are judged on (runway_provider.testing.workload.PRESETS).
POLLING = {"generations": 1000, "time_scale": 8, "seed": 1}
POLLING_WORKLOADS = {
    "project": "30–240 s runs, the project's workload",
    "short_videos": "60–120 s runs",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["polling"], help="rerun one benchmark, keep the other figures")
    args = parser.parse_args(argv)
    if args.only == "polling":
        results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
        print("== polling schedules", flush=True)
        results["polling"] = run_polling()
        write(results)
        return
    started = time.monotonic()
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "python": platform.python_version()}
    print("== import cost", flush=True)
    results["import_cost"] = import_cost.main(["--runs", "5"])
    print("== triggerer, plain HTTP and TLS", flush=True)
    headline = ["--triggers", str(HEADLINE["triggers"]), "--interval", str(HEADLINE["interval"])]
    headline += ["--duration", str(HEADLINE["duration"])]
    results["headline_http"] = triggerer.main(headline)
    results["headline_tls"] = triggerer.main([*headline, "--tls"])
    print("== triggerer sweep", flush=True)
    results["sweep"] = []
    for size in SIZES:
        contenders = "runway,floor" if size > HTTP_MAX_TRIGGERS else "runway,http,floor"
        results["sweep"] += triggerer.main(
            ["--triggers", str(size), "--interval", str(SWEEP["interval"]), "--duration", str(SWEEP["duration"]),
             "--contenders", contenders]
        )  # fmt: skip
    print("== transfer memory", flush=True)
    results["transfer_memory"] = transfer_memory.main(["--sizes-mb", "20,200"])
    print("== worker slots", flush=True)
    results["worker_slots"] = worker_slots.main(["--seconds", "60"])
    print("== polling schedules", flush=True)
    results["polling"] = run_polling()
    results["seconds"] = round(time.monotonic() - started)
    write(results)


def run_polling() -> dict[str, Any]:
    """The polling benchmark on each workload; the project's first (its figures are ``polling``'s own,
    as before there were two), the others under ``workloads``."""
    runs = {}
    for workload in POLLING_WORKLOADS:
        options = {**POLLING, "workload": workload}
        figures = polling.main([f"--{name.replace('_', '-')}={value}" for name, value in options.items()])
        runs[workload] = {"date": datetime.date.today().isoformat(), **figures}
    return {**runs["project"], "workloads": runs}


def write(results: dict[str, Any]) -> None:
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results["sweep"], ROOT / "docs" / "img" / "triggerer-scaling.png")
    plot_polling(results["polling"], ROOT / "docs" / "img" / "polling-schedules.png")
    (ROOT / "docs" / "performance.md").write_text(render(results))
    print("== done: docs/performance.md, docs/img/triggerer-scaling.png, docs/img/polling-schedules.png")


def plot(sweep: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (cpu, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {"runway": "RunwayTaskTrigger", "http": "HttpSensorTrigger", "floor": "shared-session floor"}
    for contender, label in labels.items():
        points = sorted((r["triggers"], r) for r in sweep if r["contender"] == contender)
        if not points:
            continue
        sizes = [size for size, _ in points]
        cpu.plot(sizes, [r["cpu_ms_per_request"] for _, r in points], marker="o", label=label)
        memory.plot(sizes, [r["rss_kb_per_trigger"] for _, r in points], marker="o", label=label)
    for axis, title in ((cpu, "CPU per status request (ms)"), (memory, "peak RSS per waiting trigger (KB)")):
        axis.set_xscale("log")
        axis.set_xlabel("waiting triggers in one event loop")
        axis.set_title(title)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"One event loop, poll every {SWEEP['interval']} s, jobs finishing after {SWEEP['duration']} s"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


POLICY_LABELS = {
    "fixed-5s": "fixed 5 s",
    "fixed-10s": "fixed 10 s",
    "sdk-6s": "SDK 6 s ± 1.5 s",
    "adaptive": "adaptive",
}


def plot_polling(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = figures["policies"]
    labels = [POLICY_LABELS.get(r["policy"], r["policy"]) for r in rows]
    colors = ["#9e9e9e" if r["policy"] != "adaptive" else "#1f77b4" for r in rows]
    positions = range(len(rows))
    figure, (requests, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    requests.bar(positions, [r["requests_per_generation_mean"] for r in rows], color=colors, label="mean")
    requests.scatter(
        positions,
        [r["requests_per_generation_p99"] for r in rows],
        color="black",
        marker="_",
        s=400,
        label="p99",
    )
    fixed10 = next((r for r in rows if r["policy"] == "fixed-10s"), None)
    if fixed10:
        target = fixed10["requests_per_generation_mean"] * polling.REQUESTS_TARGET
        requests.axhline(
            target,
            color="#1f77b4",
            linestyle="--",
            linewidth=1,
            label=f"target: {polling.REQUESTS_TARGET:g}× fixed 10 s",
        )
    requests.set_title("polls per generation")
    width = 0.38
    latency.bar(
        [p - width / 2 for p in positions],
        [r["detect_p50_s"] for r in rows],
        width,
        color=colors,
        label="p50",
    )
    latency.bar(
        [p + width / 2 for p in positions], [r["detect_p99_s"] for r in rows], width, color=colors, alpha=0.5,
        hatch="//", label="p99",
    )  # fmt: skip
    fixed5 = next((r for r in rows if r["policy"] == "fixed-5s"), None)
    if fixed5:
        latency.axhline(
            fixed5["detect_p99_s"],
            color="#1f77b4",
            linestyle="--",
            linewidth=1,
            label="target: fixed 5 s p99",
        )
    latency.set_title("end seen after it happened (service s)")
    # Room above the bars for the legends.
    requests.set_ylim(0, 1.35 * max(r["requests_per_generation_p99"] for r in rows))
    latency.set_ylim(0, 1.3 * max(r["detect_p99_s"] for r in rows))
    for axis in (requests, latency):
        axis.set_xticks(list(positions), labels, rotation=12)
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"{figures['generations']:,} generations through RunwayTaskTrigger, "
        f"emulator workload {figures.get('workload', 'project')}, seed {figures['seed']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def polling_runs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The polling figures of each workload (results written before there were two: the project's)."""
    if "polling" not in results:
        return {}
    return results["polling"].get("workloads") or {"project": results["polling"]}


def polling_section(results: dict[str, Any]) -> list[str]:
    runs = polling_runs(results)
    lines = [
        "## Polling schedules",
        "",
        "The generations of each workload below "
        "([docs/emulator.md](emulator.md#a-realistic-workload)), the same jobs for each schedule, waited on "
        "by the real `RunwayTaskTrigger` (its `run()`, real async hook, real HTTP), all in one event loop of "
        "a fresh process as in a triggerer; half official-format jobs reporting a fraction, half "
        'reverse-format ones reporting `"NN%"` in the feed. `adaptive` is the default schedule (no '
        "`poll_interval`). Time is compressed: each service second lasts 1/scale s, every schedule's "
        "intervals are divided by the same factor, and latencies are multiplied back: all seconds below are "
        "service seconds. Polls are counted per job by the emulator; detection is the event's time minus the "
        "job's end; CPU is the waiting process's (the same work at any compression); loop lag is how late the "
        "event loop woke a 10 ms sleeper, p99, × the compression: about what the compression and the shared "
        "machine may have added to a latency. A row whose loop lag stands well above the others' ran while "
        "the machine was loaded: its latencies are late, and a ratio against them flatters the others. At "
        "300 generations p99 is the third-latest wait, so it moves from run to run; "
        "`benchmarks/polling_replay.py` replays the same workloads through the pacer offline, on any "
        "number of seeds, without the machine in the figures.",
        "",
    ]
    for workload, figures in runs.items():
        lines += polling_table(workload, figures)
    lines += [
        "![Polls per generation and detection latency for each schedule](img/polling-schedules.png)",
        "",
        "How the adaptive schedule decides is explained, rule by rule, in `runway_provider/pacing.py`; "
        "`poll_interval` keeps the fixed schedule. Its constants were tuned on these workloads, models of "
        "what the service reports, not on the live service.",
        "",
    ]
    return lines


def polling_table(workload: str, figures: dict[str, Any]) -> list[str]:
    rows, targets = figures["policies"], figures["targets"]
    command = (
        f"python benchmarks/polling.py --generations {figures['generations']} "
        f"--time-scale {figures['time_scale']:g} --seed {figures['seed']} --workload {workload}"
    )

    def row(r: dict[str, Any]) -> str:
        return (
            f"| {POLICY_LABELS.get(r['policy'], r['policy'])} | {r['requests_per_generation_mean']:.2f} | "
            f"{r['requests_per_generation_p99']} | {r['detect_p50_s']:.2f} | {r['detect_p99_s']:.2f} | "
            f"{r['cpu_s']:.1f} | {r['events']:,} | {r['loop_lag_p99_s']:.2f} |"
        )

    verdict = (
        f"Adaptive against fixed 10 s: **{targets['requests_vs_fixed_10s']:.2f}×** the requests per generation "
        f"(target ≤ {polling.REQUESTS_TARGET:g}×: {'met' if targets['requests_target_met'] else '**not met**'}). "
        f"Against fixed 5 s: detection p99 **{targets['detect_p99_vs_fixed_5s']:.2f}×** (target ≤ 1×: "
        f"{'met' if targets['detect_target_met'] else '**not met**'}), p50 "
        f"{targets['detect_p50_vs_fixed_5s']:.2f}×."
    )
    return [
        f"### {POLLING_WORKLOADS.get(workload, workload).capitalize()}",
        "",
        f"Measured on {figures['date']} ({figures['seconds']} s), {figures['generations']:,} generations, "
        f"time compressed {figures['time_scale']:g}×. `{command}`",
        "",
        "| schedule | polls / generation | polls p99 | detect p50 s | detect p99 s | CPU s | events | loop lag p99 s |",
        "|---|---|---|---|---|---|---|---|",
        *[row(r) for r in rows],
        "",
        verdict,
        "",
    ]


def sizing_section(results: dict[str, Any]) -> list[str]:
    """What a Runway wait costs a triggerer, per 1,000 waits, from the `runway` rows above."""
    by = {(r["contender"], r["triggers"]): r for r in results["sweep"]}
    plain = {r["contender"]: r for r in results["headline_http"]}
    measured = [
        (plain["runway"], HEADLINE["interval"]),
        *[(by[("runway", n)], SWEEP["interval"]) for n in SIZES if n >= 1000 and ("runway", n) in by],
    ]

    def row(r: dict[str, Any], interval: float) -> str:
        per_thousand = 1000 / r["triggers"]
        return (
            f"| {r['triggers']:,} | {interval:g} s | {r['cpu_cores'] * per_thousand:.3f} | "
            f"{r['peak_open_sockets']} | {r['rss_kb_per_trigger'] * 1000 / 1024:.1f} | {1000 / interval:g} |"
        )

    fewer = ""
    if "polling" in results:
        ratio = results["polling"]["targets"]["requests_vs_fixed_10s"]
        fewer = f" (the default, adaptive schedule sends {ratio:.2f}× as many)"
    return [
        "## Sizing triggerers",
        "",
        "What waiting costs per 1,000 Runway waits in one triggerer, from the `runway` rows above "
        "(the trigger's own work: Airflow's bookkeeping of each trigger in the triggerer comes on top):",
        "",
        "| waits in the triggerer | poll every | CPU cores per 1,000 waits | open sockets (all waits) "
        "| RSS MB per 1,000 waits | polls per second per 1,000 waits |",
        "|---|---|---|---|---|---|",
        *[row(r, interval) for r, interval in measured],
        "",
        "A triggerer runs its triggers in one event loop, so at most one core; the waits share one aiohttp "
        "session per loop and host, at most 100 sockets. By these figures neither CPU nor sockets limit how "
        "many Runway waits a triggerer holds: size `[triggerer] capacity` (default 1,000) for everything "
        "it runs, and the number of waits for the "
        "CometAPI key's rate limit: 1,000 waits polling every 10 s are 100 requests a second" + fewer + ".",
        "",
        "Run two or more triggerers so that waits survive the loss of one, each with a capacity such that "
        "the others can take a dead one's triggers: with N triggerers, (N − 1) × capacity ≥ the peak number "
        "of waits. A triggerer at its capacity takes none of them until its own triggers finish. Airflow "
        "does not balance triggerers by itself (two of them got from 21/19 to 40/0 of 40 waits in the "
        "system test): capacity is what bounds each one's share. The move "
        "comes `[triggerer] triggerer_health_check_threshold` (30 s by default) after the dead triggerer's "
        "last heartbeat, plus up to one loop of the survivor, and costs the waits nothing: no second "
        "submission, no cancel, the same deadline ([Reliability](reliability.md#waits-move-between-triggerers)).",
        "",
    ]


def render(results: dict[str, Any]) -> str:
    by = {(r["contender"], r["triggers"]): r for r in results["sweep"]}
    plain = {r["contender"]: r for r in results["headline_http"]}
    tls = {r["contender"]: r for r in results["headline_tls"]}
    big = by[("runway", 10000)]
    imports = {r["modules"]: r for r in results["import_cost"]}
    ours = next(r for name, r in imports.items() if name.startswith("runway_provider"))
    slots = {r["mode"]: r for r in results["worker_slots"]}
    runway_runs = [
        r
        for r in [*results["sweep"], *results["headline_http"], *results["headline_tls"]]
        if r["contender"] == "runway"
    ]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×"

    def row(r: dict[str, Any]) -> str:
        return (
            f"| {r['contender']} | {r['triggers']:,} | {r['cpu_ms_per_request']:.3f} | {r['cpu_cores']:.3f} | "
            f"{r['rss_kb_per_trigger']:.1f} | {r['requests']:,} | {r['peak_open_sockets']} | "
            f"{r['detect_p50_s']:.2f} | {r['detect_p99_s']:.2f} |"
        )

    header = (
        "| contender | triggers | CPU ms / request | CPU cores | RSS KB / trigger | requests | peak sockets "
        "| detect p50 s | detect p99 s |\n|---|---|---|---|---|---|---|---|---|"
    )
    targets = [
        (
            "CPU per poll ≤ 1.5× the floor (plain HTTP, 1,000 triggers)",
            ratio(plain["runway"]["cpu_ms_per_request"], plain["floor"]["cpu_ms_per_request"]),
        ),
        (
            "CPU per poll ≤ 1.5× the floor (TLS, 1,000 triggers)",
            ratio(tls["runway"]["cpu_ms_per_request"], tls["floor"]["cpu_ms_per_request"]),
        ),
        (
            "CPU per poll ≥ 4× lower than HttpSensorTrigger (plain HTTP)",
            ratio(plain["http"]["cpu_ms_per_request"], plain["runway"]["cpu_ms_per_request"]) + " lower",
        ),
        (
            "CPU per poll ≥ 4× lower than HttpSensorTrigger (TLS)",
            ratio(tls["http"]["cpu_ms_per_request"], tls["runway"]["cpu_ms_per_request"]) + " lower",
        ),
        (
            "≤ 15 KB RSS per waiting trigger (1,000 and more triggers)",
            f"{max(r['rss_kb_per_trigger'] for r in runway_runs if r['triggers'] >= 1000):.1f} KB at most",
        ),
        (
            f"detection p99 ≤ poll_interval + 0.5 s ({HEADLINE['interval']} s, 1,000 triggers)",
            f"{plain['runway']['detect_p99_s']:.2f} s",
        ),
        (
            f"detection p99 ≤ poll_interval + 0.5 s ({SWEEP['interval']} s, 10,000 triggers)",
            f"{big['detect_p99_s']:.2f} s",
        ),
        ("10,000 triggers at 10 s: < 0.5 CPU core", f"{big['cpu_cores']:.3f} cores"),
        ("10,000 triggers at 10 s: ≤ 200 open sockets", f"{big['peak_open_sockets']}"),
        (
            "import cost of the operator, sensor and hook modules < 2% of `import airflow.sdk`",
            f"{ours.get('median_share_of_airflow_sdk_percent', '?')}% ({ours['median_ms_over_airflow_sdk']} ms)",
        ),
        (
            "deferrable sensor holds a worker ≤ 3 s (60 s generation)",
            f"{slots['deferrable']['worker_slot_s']} s",
        ),
        (
            "storing a 200 MB video: flat memory",
            "{peak_rss_growth_mb} MB peak growth for {file_mb} MB".format(**results["transfer_memory"][-1]),
        ),
    ]
    for workload, figures in polling_runs(results).items():
        pt, label = figures["targets"], POLLING_WORKLOADS.get(workload, workload)
        targets += [
            (
                f"default (adaptive) polling, {label}: requests per generation "
                f"≤ {polling.REQUESTS_TARGET:g}× fixed 10 s",
                f"{pt['requests_vs_fixed_10s']:.2f}×",
            ),
            (
                f"default (adaptive) polling, {label}: detection p99 ≤ fixed 5 s",
                f"{pt['detect_p99_vs_fixed_5s']:.2f}×",
            ),
        ]
    lines = [
        "# Performance",
        "",
        "<!-- Generated by `make bench` (benchmarks/run_all.py); edit that script, not this page. -->",
        "",
        f"Measured on {results['date']} on this project's 2-core machine (Python {results['python']}), "
        f"all in one run of `make bench` ({results['seconds']} s). Every target is a ratio or a limit "
        "within that run: the machines are shared and noisy, so no test times anything.",
        "",
        "## Targets",
        "",
        "| target | measured |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in targets],
        "",
        "## Waiting in the triggerer",
        "",
        "`benchmarks/triggerer.py` runs the emulator in its own process (its CPU is not counted) with N "
        "jobs that all finish at a known time, then waits on them with each contender in a fresh process "
        "and one event loop, as the triggerer runs triggers: `runway` is the real `RunwayTaskTrigger` "
        "(real async hook, real HTTP); `http` is apache-airflow-providers-http's `HttpSensorTrigger` on an "
        "endpoint that answers 404 until the job is done; `floor` is a bare poller on one shared aiohttp "
        "session. Requests are counted by the emulator; RSS and open sockets are sampled from `/proc` "
        "by the parent every 100 ms; detection latency is the event's time minus the job's completion time.",
        "",
        f"### 1,000 triggers, poll every {HEADLINE['interval']} s, plain HTTP",
        "",
        f"`python benchmarks/triggerer.py --triggers 1000 --interval 2 --duration {HEADLINE['duration']}`",
        "",
        header,
        *[row(plain[c]) for c in ("runway", "http", "floor") if c in plain],
        "",
        f"### 1,000 triggers, poll every {HEADLINE['interval']} s, TLS (self-signed, as against the real service)",
        "",
        f"`python benchmarks/triggerer.py --triggers 1000 --interval 2 --duration {HEADLINE['duration']} --tls`",
        "",
        header,
        *[row(tls[c]) for c in ("runway", "http", "floor") if c in tls],
        "",
        f"### Scaling: poll every {SWEEP['interval']} s, jobs finish after {SWEEP['duration']} s",
        "",
        header,
        *[row(by[(c, n)]) for n in SIZES for c in ("runway", "http", "floor") if (c, n) in by],
        "",
        f"`HttpSensorTrigger` opens a new session and connection for every poll; above {HTTP_MAX_TRIGGERS:,} "
        "triggers its closed connections (TIME_WAIT) exhaust the loopback's ephemeral ports, so it is not run "
        "there.",
        "",
        "![CPU per poll and memory per trigger against the number of triggers](img/triggerer-scaling.png)",
        "",
        "What makes waiting cheap: one aiohttp session per event loop and host shared by every trigger "
        "(at most 100 sockets), the connection read once per loop and connection for 30 s (a 401 re-reads "
        "it), a poll that does not enter tenacity unless it failed, no raw answer kept while waiting, and "
        "first polls spread over one interval so that tasks deferred together do not poll in lockstep.",
        "",
        "## DAG parsing",
        "",
        "`python benchmarks/import_cost.py`: median of 5 fresh interpreters, time to import the modules after "
        "`import airflow.sdk`, and that time as a share of `import airflow.sdk` in the same interpreter.",
        "",
        "| modules | median ms over `airflow.sdk` | share of `import airflow.sdk` | imports aiohttp or requests |",
        "|---|---|---|---|",
        *[
            f"| {r['modules']} | {r['median_ms_over_airflow_sdk']} | "
            f"{r.get('median_share_of_airflow_sdk_percent', '?')}% | "
            f"{', '.join(r['imports_aiohttp_or_requests']) or 'no'} |"
            for r in results["import_cost"]
        ],
        "",
        "## Worker slots",
        "",
        "`python benchmarks/worker_slots.py --seconds 60`: one 60 s generation waited on by `RunwayTaskSensor` "
        "in each mode on a real Airflow (api-server, scheduler with LocalExecutor, dag-processor, triggerer). "
        "Seconds held are read from the execution API's own record of each time a worker started the task "
        "instance and handed it back (deferred, up for reschedule, or finished).",
        "",
        "| mode | worker slot held (s) | worker runs | task-instance duration (s) |",
        "|---|---|---|---|",
        *[
            f"| {m} | {slots[m]['worker_slot_s']} | {slots[m]['worker_runs']} | {slots[m]['task_instance_duration_s']} |"
            for m in ("poke", "reschedule", "deferrable")
            if m in slots
        ],
        "",
        "## Storing videos",
        "",
        "`python benchmarks/transfer_memory.py --sizes-mb 20,200`: `RunwayToObjectStorageOperator` stores a "
        "video served by the emulator in a fresh process; peak RSS growth over the process's baseline.",
        "",
        "| file (MB) | peak RSS growth (MB) | growth / file size | seconds |",
        "|---|---|---|---|",
        *[
            f"| {r['file_mb']} | {r['peak_rss_growth_mb']} | {r['growth_per_file_size']} | {r['seconds']} |"
            for r in results["transfer_memory"]
        ],
        "",
        *(polling_section(results) if "polling" in results else []),
        *sizing_section(results),
        "Reproduce everything with `make bench` (it installs the http provider and matplotlib, which the "
        "provider itself does not need).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
