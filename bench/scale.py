"""Scale: how the service's own cost grows with the number of trials.

Measures the service, not the compress-and-fine-tune cycle: every trial's cycle is replaced
by an instant stand-in (``tests/instantplugin``: per-epoch reports, a small model file,
figures that are a fixed function of the configuration). Three parts, all on a loopback Ray
cluster (one head node, 127.0.0.1 only, 16 logical CPUs):

1. Orchestration: ``gnn-search run`` with 1000 instant trials at concurrency 16 against the
   same 1000 instant trials through a plain ``Tuner`` + ``OptunaSearch`` script (what a user
   would write instead), in the same run; wall time of ``fit`` and the driver's time per
   trial over trials 1-100 and 900-1000, with the parts of the driver that can grow timed
   (experiment-state saves, Optuna's suggest and tell, the MLflow callback).
   Targets: service <= 1.3x plain; per-trial time over 900-1000 <= 1.5x that over 1-100.
2. Analysis: ``pareto``, ``report`` and ``compare`` on an experiment of 10,000 finished runs
   (written through the service's tracking functions), on SQLite and through
   ``gnn-search mlflow-server``, each against ``mlflow.search_runs`` fetching the same runs.
   Target: each <= 2x.
3. Soak: the 1000-trial search SIGKILLed at about trial 500 and resumed: 1000 runs, none
   lost, none twice, every model file present.

    python bench/scale.py [--quick] [--trials N] [--runs N] [--part orchestration|analysis|soak]
                          [--data-root DIR] [--cache-dir DIR] [--no-write]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import append_lines, append_result, parse_args  # noqa: E402

PLUGIN = REPO / "tests" / "instantplugin"
CPUS = 16
CONCURRENCY = 16
SPACE = "cora_node"
PARTS = ("orchestration", "analysis", "soak")


def _extra(parser) -> None:
    parser.add_argument("--trials", type=int, help="trials per search (default 1000; "
                        "--quick 32)")
    parser.add_argument("--runs", type=int, help="finished runs for the analysis part "
                        "(default 10000; --quick 300)")
    parser.add_argument("--runs-db", type=Path, help="the analysis part's SQLite file: "
                        "written if missing, reused if there (default: a new one)")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="run only this part (repeatable; default: all three)")


# ---- a loopback cluster whose every process loads the stand-in ---------------------------------


def _env(cluster, args, **extra: str) -> dict[str, str]:
    env = {**cluster.env, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(REPO)]),
           "PYTHONWARNINGS": "ignore", "RAY_ADDRESS": cluster.address, **extra}
    if args.data_root:
        env["GNN_SEARCH_DATA"] = str(args.data_root)
    if args.cache_dir:
        env["GNN_SEARCH_CACHE"] = str(args.cache_dir)
    return env


def _start_cluster(args):
    from tests.ray_loopback import LoopbackCluster

    cluster = LoopbackCluster(cpus_per_node=CPUS)
    cluster.env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN), str(REPO)])  # workers: stand-in
    cluster.start_head()
    cluster.wait_for_cpus(CPUS)
    return cluster


def _service_args(name: str, trials: int, work: Path, cluster) -> list[str]:
    return [sys.executable, "-m", "search.cli", "run", "--space", SPACE, "--trials",
            str(trials), "--concurrency", str(CONCURRENCY), "--address", cluster.address,
            "--storage", str(work / "ray"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--name", name, "--quiet"]


def _trial_runs(tracking_uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id],
                                  "tags.`gnn_search.role` = 'trial'", max_results=1000,
                                  page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def _search_wall_s(tracking_uri: str, name: str) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    parent = client.search_runs([experiment.experiment_id], "tags.`gnn_search.role` = 'search'")
    return parent[0].data.metrics["search_wall_s"]


def per_trial_s(done_s: list[float], first: int, last: int) -> float:
    """The driver's seconds per trial over trials ``first``..``last`` (1-based, by when each
    finished): the span between their completions over the number of trials in it."""
    done = sorted(done_s)
    last = min(last, len(done))
    return (done[last - 1] - done[first - 2 if first > 1 else 0]) / (
        last - first + (1 if first > 1 else 0))


def windows(trials: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The first and last tenth of a search (1-100 and 900-1000 of 1000)."""
    tenth = max(2, trials // 10)
    return (1, tenth), (trials - tenth, trials)


def parts_per_trial(calls: list, done_s: list[float], window: tuple[int, int]) -> dict:
    """Seconds per trial each timed part of the driver took between the completions that
    bound ``window``."""
    done = sorted(done_s)
    start, end = done[max(0, window[0] - 2)], done[window[1] - 1]
    count = window[1] - window[0] + 1
    out: dict[str, float] = {}
    for part, at, seconds in calls:
        if start <= at <= end:
            out[part] = out.get(part, 0.0) + seconds / count
    return out


def orchestration(args, work: Path, trials: int) -> dict:
    """Service and plain script, side by side, on one loopback cluster."""
    cluster = _start_cluster(args)
    try:
        profile = work / "service-profile.json"
        env = _env(cluster, args, GNN_SEARCH_SCALE_PROFILE=str(profile))
        log = work / "service.log"
        started = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.run(_service_args("scale-service", trials, work, cluster),
                                  cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=7200)
        service_total = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"the service's search failed:\n{log.read_text()[-3000:]}")
        uri = f"sqlite:///{work / 'mlflow.db'}"
        runs = _trial_runs(uri, "scale-service")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        calls = json.loads(profile.read_text())
        # the MLflow callback's on_trial_complete: when the driver took each trial's result
        service_done = [at for part, at, _ in calls if part == "mlflow_complete"]
        service = {"wall_s": _search_wall_s(uri, "scale-service"), "total_s": service_total,
                   "finished": len(finished), "done": service_done,
                   "calls": calls}

        plain_out = work / "plain.json"
        with (work / "plain.log").open("w") as out:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("scale_plain.py")),
                 "--trials", str(trials), "--concurrency", str(CONCURRENCY),
                 "--storage", str(work / "ray-plain"), "--out", str(plain_out)],
                cwd=work, env=_env(cluster, args), stdout=out, stderr=subprocess.STDOUT,
                timeout=7200)
        if proc.returncode != 0:
            raise RuntimeError("the plain script failed:\n"
                               + (work / "plain.log").read_text()[-3000:])
        plain = json.loads(plain_out.read_text())
    finally:
        cluster.stop()
    return {"service": service, "plain": plain}


def orchestration_body(result: dict, trials: int) -> tuple[str, str]:
    service, plain = result["service"], result["plain"]
    early, late = windows(trials)
    rows, ratios = [], {}
    for label, run in (("service (gnn-search run)", service), ("plain Tuner + OptunaSearch",
                                                                 plain)):
        a, b = per_trial_s(run["done"], *early), per_trial_s(run["done"], *late)
        ratios[label] = b / a
        rows.append(f"| {label} | {run['finished']} | {run['wall_s']:.1f} | "
                    f"{run['wall_s'] / plain['wall_s']:.2f} | {1000 * a:.0f} | {1000 * b:.0f} | "
                    f"{b / a:.2f} |")
    parts = {w: parts_per_trial(service["calls"], service["done"], w) for w in (early, late)}
    names = sorted(set(parts[early]) | set(parts[late]))
    part_rows = [f"| {n} | {1000 * parts[early].get(n, 0):.1f} | "
                 f"{1000 * parts[late].get(n, 0):.1f} |" for n in names]
    wall_ratio = service["wall_s"] / plain["wall_s"]
    growth = ratios["service (gnn-search run)"]
    body = "\n".join([
        f"{trials} instant trials (the cycle replaced by `tests/instantplugin`: this measures "
        f"the service, not the cycle), concurrency {CONCURRENCY}, a loopback Ray head with "
        f"{CPUS} logical CPUs on this {os.cpu_count()}-core machine, space `{SPACE}` (TPE, 3 "
        "objectives). Wall: `Tuner.fit` (the service's `search_wall_s`). Per-trial: the "
        "driver's time between completions (its MLflow callback; the plain script's own "
        "callback).", "",
        f"| run | finished | wall s | vs plain | ms/trial {early[0]}-{early[1]} | "
        f"ms/trial {late[0]}-{late[1]} | growth |", "|---|---|---|---|---|---|---|", *rows, "",
        f"Targets: service <= 1.3x plain (measured {wall_ratio:.2f}); growth <= 1.5x "
        f"(measured {growth:.2f}).", "",
        "The service driver's timed parts, ms per trial in each window:", "",
        f"| part | {early[0]}-{early[1]} | {late[0]}-{late[1]} |", "|---|---|---|",
        *part_rows,
    ])
    return body, f"scale wall_ratio={wall_ratio:.2f} growth={growth:.2f}"


# ---- analysis at 10,000 runs ------------------------------------------------------------------


def write_runs(tracking_uri: str, name: str, runs: int) -> str:
    """An experiment of ``runs`` finished trial runs written as the service writes them (a
    parent run, then each trial's child run: config, per-epoch and final metrics, tags)."""
    import random

    from mlflow.tracking import MlflowClient

    from search.tracking import SearchRun, create_trial_run, end_trial_run, open_experiment
    from spaces import load_space

    sys.path.insert(0, str(PLUGIN))
    from sitecustomize import stand_in_metrics  # the stand-in's figures

    client = MlflowClient(tracking_uri)
    experiment_id = open_experiment(client, name, None)
    space = load_space(SPACE)
    parent = SearchRun(client, experiment_id, name, params={
        "space": f"{SPACE}.yaml", "task": space.task, "objectives": ",".join(
            f"{m}:{d}" for m, d in space.objectives.items()), "trials": runs}, tags={})
    parent.log_metrics({"baseline_val_acc": 0.82, "baseline_size_bytes": 92_000.0,
                        "baseline_latency_ms": 2.5})
    rng = random.Random(0)
    methods = ["global", "fine_grained", "regularization", "structured", "random", "none"]
    for i in range(runs):
        config = {"prune.method": rng.choice(methods), "prune.sparsity": rng.uniform(0.3, 0.95),
                  "quant.method": rng.choice(["qat", "degree_quant", "a2q", "ptq", "fp32"]),
                  "quant.bits": rng.choice([4, 8]), "finetune.epochs": rng.randint(10, 100),
                  "finetune.lr": 10 ** rng.uniform(-4, -1.3)}
        metrics = stand_in_metrics(config)
        run_id = create_trial_run(client, experiment_id, parent.run_id, name, f"t{i:05d}",
                                  config)
        history = [{"epoch": e, "train_loss": 1.0 / e, "val_acc": metrics["val_acc"]}
                   for e in range(1, 11)]
        end_trial_run(client, run_id, "finished",
                      record={"metrics": metrics, "tags": {"stand_in": "instant"},
                              "history": history})
    parent.end("FINISHED")
    return experiment_id


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _quiet(fn):
    import contextlib
    import io

    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
                io.StringIO()):
            code = fn()
        if code not in (0, None):
            raise RuntimeError(f"analysis command failed (exit {code})")
    return run


def analysis_times(tracking_uri: str, big: str, small: str, out: Path) -> dict[str, float]:
    """Seconds of each analysis command (in this process, best of 2) and of the
    ``mlflow.search_runs`` calls fetching the same runs."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from analysis.cli import main as analysis

    client = MlflowClient(tracking_uri)
    ids = {n: client.get_experiment_by_name(n).experiment_id for n in (big, small)}
    mlflow.set_tracking_uri(tracking_uri)

    def fetch(*names: str):
        return lambda: mlflow.search_runs([ids[n] for n in names], max_results=100_000)

    uri = ["--tracking-uri", tracking_uri]
    return {
        "search_runs": _timed(fetch(big), 2),
        "search_runs_both": _timed(fetch(big, small), 2),
        "pareto": _timed(_quiet(lambda: analysis(["pareto", "--experiment", big, *uri])), 2),
        "report": _timed(_quiet(lambda: analysis(["report", "--experiment", big, "--out",
                                                  str(out), "--no-log", *uri])), 2),
        "compare": _timed(_quiet(lambda: analysis(["compare", "--experiments", big, small,
                                                   *uri])), 2),
    }


def analysis_part(args, work: Path, runs: int) -> dict:
    from tests.fault_helpers import MlflowServer
    from tests.ray_loopback import free_port

    db = args.runs_db or work / "mlflow.db"
    uri, write_s = f"sqlite:///{db.resolve()}", None
    if not db.exists():
        started = time.perf_counter()
        write_runs(uri, "scale-analysis", runs)
        write_runs(uri, "scale-analysis-small", max(10, runs // 10))
        write_s = time.perf_counter() - started
    out = work / "report"
    result = {"runs": runs, "write_s": write_s,
              "sqlite": analysis_times(uri, "scale-analysis", "scale-analysis-small", out)}
    report = out / "index.html"
    result["report_bytes"] = report.stat().st_size
    result["report_files_bytes"] = sum(p.stat().st_size for p in out.iterdir())
    result["report_load_ms"] = browser_load_ms(report)
    if db != work / "mlflow.db":  # the server serves <folder>/mlflow.db
        (work / "mlflow.db").symlink_to(db.resolve())
    server = MlflowServer(work, free_port(), {**os.environ, "PYTHONWARNINGS": "ignore"})
    server.start()
    try:
        result["server"] = analysis_times(server.url, "scale-analysis", "scale-analysis-small",
                                          work / "report-server")
    finally:
        server.kill()
    return result


PROBE = ("<script>addEventListener('load', () => setTimeout(() => {const n = performance"
         ".getEntriesByType('navigation')[0]; document.body.setAttribute('data-load-ms', "
         "n.loadEventEnd - n.startTime);}, 0));</script>")


def browser_load_ms(report: Path) -> float | None:
    """The report's load time in headless Chromium (navigation start to the end of the load
    event: HTML parsed, images decoded), median of 3; None without Chromium."""
    import re
    import shutil
    import statistics

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    probe = report.with_name("load-probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                   "--no-first-run", f"--user-data-dir={profile}",
                                   "--dump-dom", probe.as_uri()],
                                  capture_output=True, text=True, timeout=120)
        found = re.search(r'data-load-ms="([0-9.]+)"', proc.stdout)
        if found:
            times.append(float(found.group(1)))
    probe.unlink()
    return statistics.median(times) if times else None


def analysis_body(result: dict) -> tuple[str, str]:
    rows, worst = [], 0.0
    for backend in ("sqlite", "server"):
        t = result[backend]
        for command, against in (("pareto", "search_runs"), ("report", "search_runs"),
                                 ("compare", "search_runs_both")):
            ratio = t[command] / t[against]
            worst = max(worst, ratio)
            rows.append(f"| {backend} | {command} | {t[command]:.2f} | {t[against]:.2f} | "
                        f"{ratio:.2f} |")
    load = ("no Chromium here to time its load" if result["report_load_ms"] is None else
            f"headless Chromium loads it (navigation to the end of the load event) in "
            f"{result['report_load_ms']:.0f} ms")
    written = "" if result["write_s"] is None else f" in {result['write_s']:.0f} s"
    body = "\n".join([
        f"An experiment of {result['runs']} finished trial runs (and one of "
        f"{max(10, result['runs'] // 10)} for `compare`), written through the service's "
        f"tracking functions (`create_trial_run`, `end_trial_run`: config, 10 epochs of "
        f"history, final metrics, tags){written}. Each command in-process, "
        "best of 2, against `mlflow.search_runs` fetching the same runs (both experiments for "
        "`compare`).", "",
        "| backend | command | s | search_runs s | ratio |", "|---|---|---|---|---|", *rows, "",
        f"Target: each <= 2x (worst {worst:.2f}). The report: index.html "
        f"{result['report_bytes'] / 1e6:.2f} MB ({result['report_files_bytes'] / 1e6:.2f} MB "
        f"with its PNGs); {load}.",
    ])
    return body, f"analysis worst_ratio={worst:.2f}"


# ---- soak: SIGKILL at about half, resume --------------------------------------------------------


def soak(args, work: Path, trials: int) -> dict:
    """Kill the driver at about half the trials, resume, and check every run once."""
    from tests.fault_helpers import wait_until

    cluster = _start_cluster(args)
    name, uri = "scale-soak", f"sqlite:///{work / 'mlflow.db'}"
    try:
        env = _env(cluster, args)
        log = work / "soak.log"
        proc = subprocess.Popen(_service_args(name, trials, work, cluster), cwd=work, env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True)

        def half_done() -> bool:  # finished trials' checkpoints (cheap: no MLflow query)
            return len(list((work / "ray" / name).glob("trial_*/checkpoint_*"))) >= trials // 2

        wait_until(half_done, 7200, f"{trials // 2} finished trials", proc, log)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        at_kill = sum(r.info.status == "FINISHED" for r in _trial_runs(uri, name))
        resume = [sys.executable, "-m", "search.cli", "run", "--resume", name, "--storage",
                  str(work / "ray"), "--address", cluster.address, "--quiet"]
        with (work / "resume.log").open("w") as out:
            done = subprocess.run(resume, cwd=work, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=7200)
        if done.returncode != 0:
            raise RuntimeError("the resumed search failed:\n"
                               + (work / "resume.log").read_text()[-3000:])
    finally:
        cluster.stop()
    return {"at_kill": at_kill, **check_runs(uri, name, trials)}


def check_runs(tracking_uri: str, name: str, trials: int) -> dict:
    """Finished runs, distinct trials, trials recorded twice, finished runs without their
    model file."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = _trial_runs(tracking_uri, name)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ids = [r.data.tags["gnn_search.trial_id"] for r in finished]
    missing = [r.info.run_id for r in finished
               if "model/model.gnnz" not in {f.path for f in client.list_artifacts(
                   r.info.run_id, "model")}]
    return {"trials": trials, "runs": len(runs), "finished": len(finished),
            "distinct": len(set(ids)), "twice": len(ids) - len(set(ids)),
            "models_missing": len(missing)}


def soak_body(result: dict) -> tuple[str, str]:
    ok = (result["finished"] == result["distinct"] == result["trials"]
          and result["twice"] == 0 and result["models_missing"] == 0)
    body = "\n".join([
        f"The {result['trials']}-trial instant search SIGKILLed (the driver's process group) "
        f"once {result['at_kill']} trials had finished, then `gnn-search run --resume`:", "",
        "| trials | runs | finished | distinct trials | recorded twice | models missing |",
        "|---|---|---|---|---|---|",
        f"| {result['trials']} | {result['runs']} | {result['finished']} | "
        f"{result['distinct']} | {result['twice']} | {result['models_missing']} |", "",
        f"Target: {result['trials']} finished, none lost, none twice, every model file: "
        f"{'met' if ok else 'NOT met'}.",
    ])
    return body, f"soak finished={result['finished']}/{result['trials']} ok={ok}"


def main() -> None:
    args = parse_args(__doc__, "32 trials, 300 runs", _extra)
    trials = args.trials or (32 if args.quick else 1000)
    runs = args.runs or (300 if args.quick else 10_000)
    parts = args.part or list(PARTS)
    headlines = []
    if not args.no_write:
        append_result("Scale (bench/scale.py)", "Instant stand-in trials: these figures "
                      "describe the service's orchestration and analysis, not the cycle.")
    for part in parts:
        work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{part}-"))
        if part == "orchestration":
            body, headline = orchestration_body(orchestration(args, work, trials), trials)
        elif part == "analysis":
            body, headline = analysis_body(analysis_part(args, work, runs))
        else:
            body, headline = soak_body(soak(args, work, trials))
        print(f"### {part}\n\n{body}\n", flush=True)
        if not args.no_write:
            append_lines("", f"### {part}", "", body)
        headlines.append(headline)
    print(" ".join(headlines))


if __name__ == "__main__":
    main()
