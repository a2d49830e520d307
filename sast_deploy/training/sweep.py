"""Sweeps (DESIGN §5): a rho grid x a seed list plus the controls, every run a chain of worker
subprocesses of the public command line, so the sweep works with whatever `sast-deploy train` offers.

Runs per method (folder SWEEP/runs/<method>-rho<R>-seed<S>; every method gets every seed):
    baseline         train --rho 0
    sast             train --rho R                        every R > 0 of the grid
    compute-matched  train --rho 0 --compute-matched      (baseline with SAST's passes)
    reuse-batch      train --rho R --reuse-batch          every control rho (B' = B ablation)
    asam             train --rho R --asam                 every control rho
    ste              train --rho 0 --forward ste          (conventional STE baseline)
    calibration      no training: `calibrate` the baseline and every SAST run into RUN/calibrated
    bn-reestimation  no training: `calibrate --bn-recalibrate hard` of the baseline and every SAST run
                     into RUN/bn-hard (BatchNorm networks only, so not among the default controls)

Steps of a run: train -> evaluate --robustness --diagnostics [-> calibrate -> evaluate --robustness
of the copy] [-> BN re-estimation -> evaluate --robustness of that copy]. `extras` picks the evaluate
flags; with none, the evaluate steps are left out (the summaries already hold the accuracies). A step is done iff the file it writes last exists (train: summary.json; evaluate:
evaluation.json; calibrate: calibrated/summary.json), so an interrupted sweep resumes where it
stopped and a half-written run never looks finished. Once a step runs, every later step of its run
runs again. A partial training folder is resumed with `train --resume` (and restarted from scratch if
that fails).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import SastError
from ..jsonio import read_json, write_json
from .rundir import EVALUATION_FILE, SUMMARY_FILE

CONTROLS = ("compute-matched", "reuse-batch", "asam", "ste", "calibration", "bn-reestimation")
DEFAULT_CONTROLS = CONTROLS[:-1]  # BN re-estimation needs a BatchNorm network
EVAL_EXTRAS = ("robustness", "diagnostics")


@dataclass(frozen=True)
class PostHoc:
    """A post-hoc control: a `calibrate` step writing a copy into a folder of the run."""

    step: str
    folder: str
    flags: tuple[str, ...]
    title: str


COPIES = {"calibration": PostHoc("calibrate", "calibrated", (), "calibrated hard"),
          "bn-reestimation": PostHoc("bn-reestimate", "bn-hard", ("--bn-recalibrate", "hard"), "BN re-est. hard")}
SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "sast-deploy/sweep"


@dataclass
class SweepRun:
    """One training run of the sweep and what follows it."""

    name: str
    method: str
    rho: float
    seed: int
    train_flags: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)  # post-hoc controls (COPIES) run on this run


def _rho(r: float) -> str:
    return f"{r:g}"


def plan_runs(rhos, seeds, controls=DEFAULT_CONTROLS, control_rhos=None) -> list[SweepRun]:
    """The runs of a sweep (see the module doc). `control_rhos` (default: the positive rhos of the
    grid) are the radii of the reuse-batch and asam controls."""
    rhos = sorted({float(r) for r in rhos})
    if not rhos or min(rhos) < 0:
        raise SastError(f"--rho {rhos}: give radii >= 0 (0 is the baseline)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise SastError(f"--seeds {list(seeds)}: give distinct seeds")
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise SastError(f"--controls: unknown {sorted(unknown)}; choose from {', '.join(CONTROLS)}")
    positive = [r for r in rhos if r > 0]
    control_rhos = positive if control_rhos is None else sorted({float(r) for r in control_rhos})
    if ({"reuse-batch", "asam"} & set(controls)) and not (control_rhos and min(control_rhos) > 0):
        raise SastError("--controls reuse-batch/asam need a positive rho: add one to --rho or give --control-rho")
    copies = [c for c in COPIES if c in controls]
    specs = [("baseline", 0.0, [], copies)] + [("sast", r, [], copies) for r in positive]
    if "compute-matched" in controls:
        specs.append(("compute-matched", 0.0, ["--compute-matched"], []))
    for control, flag in (("reuse-batch", "--reuse-batch"), ("asam", "--asam")):
        if control in controls:
            specs += [(control, r, [flag], []) for r in control_rhos]
    if "ste" in controls:
        specs.append(("ste", 0.0, ["--forward", "ste"], []))
    return [SweepRun(f"{method}-rho{_rho(rho)}-seed{seed}", method, rho, int(seed),
                     ["--rho", _rho(rho), *flags], list(post))
            for method, rho, flags, post in specs for seed in seeds]


@dataclass
class Step:
    """One subprocess of a run; done iff `done_file` exists."""

    name: str
    argv: list[str]
    done_file: Path


def run_steps(run: SweepRun, run_dir: Path, train_args, eval_args, extras=EVAL_EXTRAS,
              python: str = sys.executable) -> list[Step]:
    """The command chain of one run (paths absolute, so the workers' cwd does not matter). Copies are
    evaluated without diagnostics (they describe the trained network, i.e. the source run)."""
    run_dir = run_dir.resolve()
    module = [python, "-m"]

    def evaluate(name: str, target: Path, flags: list[str]) -> list[Step]:
        argv = [*module, "sast_deploy.evaluate", "--run", str(target), *flags, *eval_args]
        return [Step(name, argv, target / EVALUATION_FILE)] if flags else []

    flags = [f"--{e}" for e in EVAL_EXTRAS if e in extras]
    steps = [Step("train", [*module, "sast_deploy.train", *train_args, *run.train_flags, "--seed", str(run.seed),
                            "--out", str(run_dir)], run_dir / SUMMARY_FILE)]
    steps += evaluate("evaluate", run_dir, flags)
    for control in run.copies:
        c = COPIES[control]
        out = run_dir / c.folder
        steps.append(Step(c.step, [*module, "sast_deploy.calibrate", "--run", str(run_dir), *c.flags,
                                   "--out", str(out)], out / SUMMARY_FILE))
        steps += evaluate(f"evaluate-{c.folder}", out, [f for f in flags if f != "--diagnostics"])
    return steps


def worker_env(jobs: int) -> dict:
    """Environment of the workers: split the CPU threads between the parallel jobs (unless set)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def _call(argv, log, env) -> int:
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL).returncode


def execute_run(steps: list[Step], run_dir: Path, log_path: Path, env: dict) -> dict:
    """Run the steps that are not done (and every step after one that runs); log to `log_path`.
    `seconds` is the time its steps took, left out when none ran (the recorded time stays)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0, ran = time.perf_counter(), False
    with open(log_path, "a") as log:
        for step in steps:
            if step.done_file.is_file() and not ran:
                continue
            ran = True
            step.done_file.unlink(missing_ok=True)  # a stale result must not survive a rerun
            if step.name == "train":
                rc = _train(step, run_dir, log, env)
            else:
                rc = _call(step.argv, log, env)
            if rc != 0 or not step.done_file.is_file():
                return {"status": "failed", "failed_step": step.name, "returncode": rc,
                        "seconds": time.perf_counter() - t0}
    return {"status": "done", "seconds": time.perf_counter() - t0} if ran else {"status": "done"}


def _train(step: Step, run_dir: Path, log, env) -> int:
    if run_dir.is_dir() and any(run_dir.iterdir()):
        # `train --resume RUN_DIR` alone: the trainer refuses other flags and uses the recorded settings
        rc = _call([*step.argv[:3], "--resume", str(run_dir)], log, env)
        if rc == 0:
            return rc
        log.write(f"resume failed (exit {rc}); restarting {run_dir} from scratch\n")
    if run_dir.is_dir():
        shutil.rmtree(run_dir)  # only ever a run folder this sweep created
    return _call(step.argv, log, env)


def load_manifest(out: Path, train_args, eval_args) -> dict:
    """The sweep's manifest; a resumed sweep must use the same train and evaluate arguments."""
    path = out / SWEEP_FILE
    if not path.is_file():
        return {"format": SWEEP_FORMAT, "version": 1, "train_args": list(train_args),
                "eval_args": list(eval_args), "runs": {}}
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as e:
        raise SastError(f"{path}: cannot read the sweep manifest ({e}); use a new --out") from None
    if manifest.get("format") != SWEEP_FORMAT:
        raise SastError(f"{path}: not a sast-deploy sweep manifest; use a new --out")
    for key, now in (("train_args", list(train_args)), ("eval_args", list(eval_args))):
        if manifest.get(key) != now:
            raise SastError(f"--out {out}: this sweep was started with {key} {manifest.get(key)}, now {now}; "
                            "resume it with the same settings or use a new --out")
    return manifest


def run_sweep(out, runs: list[SweepRun], train_args=(), eval_args=(), jobs: int = 1,
              progress: bool = True, extras=EVAL_EXTRAS) -> dict:
    """Execute `runs` (skipping finished steps) with `jobs` parallel workers; returns the manifest,
    also written to SWEEP/sweep.json after every run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out, train_args, eval_args)
    for run in runs:
        entry = manifest["runs"].setdefault(run.name, {})
        entry.update({**asdict(run), "dir": f"runs/{run.name}", "log": f"logs/{run.name}.log"})
        entry.setdefault("status", "pending")
    write_json(out / SWEEP_FILE, manifest)
    env = worker_env(jobs)

    def work(run: SweepRun) -> tuple[str, dict]:
        run_dir = out / "runs" / run.name
        steps = run_steps(run, run_dir, train_args, eval_args, extras)
        return run.name, execute_run(steps, run_dir, out / "logs" / f"{run.name}.log", env)

    bar = tqdm(total=len(runs), desc="sweep", unit="run", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(work, run) for run in runs]
        try:
            for fut in as_completed(futures):
                name, result = fut.result()
                entry = manifest["runs"][name]  # only this thread writes the manifest
                for stale in ("failed_step", "returncode"):
                    entry.pop(stale, None)
                entry.update(result)
                write_json(out / SWEEP_FILE, manifest)
                bar.update()
                if result["status"] != "done":
                    tqdm.write(f"{name}: {result['failed_step']} failed (exit {result['returncode']}); "
                               f"see {out / 'logs' / (name + '.log')}")
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            bar.close()
    return manifest
