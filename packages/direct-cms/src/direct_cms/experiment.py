"""End-to-end jobs behind the CLI: evaluate students against their teacher, sample, and the CD-vs-Direct demo."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from direct_cms.classifier import DigitClassifier, load_classifier, save_classifier, train_classifier
from direct_cms.data import load_dataset
from direct_cms.distill import DistillConfig, distill, load_student
from direct_cms.evaluation import DEFAULT_KS, EvalNoise, quality_metrics, student_sample, teacher_sample
from direct_cms.guidance import GuidedTeacher, UNetEps
from direct_cms.metrics import ode_error
from direct_cms.plotting import save_sample_figure
from direct_cms.scheduler import DirectCMScheduler
from direct_cms.solvers import make_solver
from direct_cms.teacher import Teacher, TeacherConfig, load_teacher, save_teacher, train_teacher
from sixlab_shared import RunDir, UserError, get_device, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "EvalConfig", "evaluate_students", "format_table", "run_demo", "sample_student"]

NOISE_FILE = "eval_noise.safetensors"
CLASSIFIER_FILE = "digit_classifier.safetensors"
TEACHER_SAMPLES_FILE = "teacher_samples.safetensors"


@dataclass
class EvalConfig:
    """Settings of ``direct-cms evaluate``."""

    num_samples: int = 500
    """Fixed initial noises (and samples per model)."""
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    """Student step counts K."""
    sanity_samples: int = 64
    """Samples for the teacher's N-step vs 1000-step sanity line (0 skips it)."""
    seed: int = 0
    """Seeds the fixed noise (stored once, reused)."""
    sanity_intervals: int = 1000
    """Grid of the teacher's fine reference solve for the sanity line (1000 = every schedule step)."""
    classifier_steps: int = 400
    """Training steps of the digit classifier when it is not cached."""


def _classifier_for(data_name: str, path: Path, seed: int, steps: int) -> DigitClassifier | None:
    if data_name != "digits":
        return None
    if path.is_file():
        return load_classifier(path)
    classifier = train_classifier(load_dataset("digits"), seed=seed, steps=steps)
    save_classifier(classifier, path)
    return classifier


def _noise_for(run: RunDir, teacher: Teacher, config: EvalConfig, sample_shape: tuple[int, ...]) -> EvalNoise:
    path = run.file(NOISE_FILE)
    if path.is_file():
        noise = EvalNoise.from_state(load_checkpoint(path))
        if noise.x_T.shape[0] == config.num_samples and tuple(noise.x_T.shape[1:]) == sample_shape:
            return noise
        raise UserError(
            f"{str(path)} holds noise for {noise.x_T.shape[0]} samples of shape {tuple(noise.x_T.shape[1:])}; "
            "use the same --num-samples or another --out"
        )
    noise = EvalNoise.generate(sample_shape, config.num_samples, teacher.num_classes, config.seed, max(config.ks))
    save_checkpoint(path, noise.state())
    return noise


def _to_cpu(x: torch.Tensor) -> torch.Tensor:
    """``x`` on the CPU (the same tensor when it is there already); waits for the device's work to finish."""
    return x.cpu()


def evaluate_students(
    student_dirs: dict[str, str | Path],
    out: str | Path,
    config: EvalConfig,
    classifier_path: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate distilled students (``name → distill run dir``) against their shared teacher; write to ``out``.

    The teacher's solves and the students' sampling run on ``device`` (default: the best available); the fixed
    noise is drawn on the CPU (stored, identical on every device) and moved there, and the samples come back to the
    CPU for the quality metrics, which run on the CPU. On the CPU this is the plain CPU computation.

    The digit classifier (the frozen feature space) is loaded from ``classifier_path`` if it exists, else trained
    and saved there (default ``<out>/digit_classifier.safetensors``).

    All students must share the teacher, N, solver and guidance (the teacher reference depends on them).

    Returns:
        ``{"teacher": {...}, "students": {name: {K: {ode_error, quality...}}}}`` (also in ``summary.json``).

    Raises:
        UserError: no students, students with different teacher settings, K > N, or unloadable runs.
    """
    if not student_dirs:
        raise UserError("pass at least one --student RUN_DIR (the --out of a `distill` run)")
    loaded = {name: load_student(path) for name, path in student_dirs.items()}
    settings = {(c.teacher, c.num_intervals, c.solver, c.guidance) for _, c, _ in loaded.values()}
    if len(settings) > 1:
        raise UserError(
            f"students were distilled with different teacher/N/solver/guidance {sorted(settings)}; "
            "evaluate them separately"
        )
    _, first_config, _ = next(iter(loaded.values()))
    dev = get_device(device)
    # a fresh copy: the students' networks carry their LoRA adapters (enabled), the reference must not
    teacher = load_teacher(first_config.teacher)
    teacher.network.to(dev)
    if max(config.ks) > first_config.num_intervals:
        raise UserError(f"K={max(config.ks)} exceeds the distillation grid N={first_config.num_intervals}")
    data = load_dataset(teacher.dataset or "digits", seed=0)
    out = Path(out)
    run = RunDir(out, resume=(out / "config.json").is_file())
    if not run.resume:
        run.write_config({**asdict(config), "students": {k: str(v) for k, v in student_dirs.items()}}, seed=config.seed)
    classifier = _classifier_for(
        data.name, Path(classifier_path or out / CLASSIFIER_FILE), config.seed, config.classifier_steps
    )
    noise = _noise_for(run, teacher, config, tuple(data.x.shape[1:]))

    # teacher reference: its own N-step solve at the training guidance, from the fixed x_T
    grid = teacher.grid(first_config.num_intervals)
    null = torch.tensor(teacher.null_class, device=dev)
    guided = GuidedTeacher(UNetEps(teacher.network), first_config.guidance, null)
    x_T, labels = noise.x_T.to(dev), noise.labels.to(dev)
    start = time.perf_counter()
    reference = _to_cpu(teacher_sample(guided, make_solver(first_config.solver, grid), x_T, labels))
    teacher_time = time.perf_counter() - start
    save_checkpoint(run.file(TEACHER_SAMPLES_FILE), {"samples": reference, "labels": noise.labels})
    # a second, independent teacher split (fresh noise) for the teacher-vs-teacher quality floor
    split_noise = EvalNoise.generate(
        tuple(data.x.shape[1:]), config.num_samples, teacher.num_classes, config.seed + 1, 1
    )
    teacher_split = _to_cpu(
        teacher_sample(
            guided, make_solver(first_config.solver, grid), split_noise.x_T.to(dev), split_noise.labels.to(dev)
        )
    )
    teacher_result: dict[str, Any] = {
        "nfe": first_config.num_intervals * (2 if first_config.guidance not in (0.0, 1.0) else 1),
        "wall_s": teacher_time,
        **quality_metrics(reference, noise.labels, data, teacher_split, classifier),
    }
    if config.sanity_samples > 0:
        m = min(config.sanity_samples, config.num_samples)
        fine = _to_cpu(
            teacher_sample(
                guided, make_solver(first_config.solver, teacher.grid(config.sanity_intervals)), x_T[:m], labels[:m]
            )
        )
        teacher_result["ode_error_vs_fine"] = ode_error(reference[:m], fine)
    results: dict[str, Any] = {"teacher": teacher_result, "students": {}}
    panels = [(f"teacher {first_config.solver}-{first_config.num_intervals}", reference)]
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, first_config.num_intervals)
    for name, (models, _, _) in loaded.items():
        models.to(dev)
        per_k: dict[str, Any] = {}
        for k in config.ks:
            start = time.perf_counter()
            # the stored re-noising draws stay on the CPU; the sampler moves each step's slice to the device
            samples = _to_cpu(student_sample(models.student_eps, scheduler, x_T, labels, k, noise.renoise))
            wall = time.perf_counter() - start
            per_k[str(k)] = {
                "ode_error": ode_error(samples, reference),
                "nfe": k,
                "wall_s": wall,
                **quality_metrics(samples, noise.labels, data, reference, classifier),
            }
            if k in (1, max(config.ks)):
                panels.append((f"{name} K={k}", samples))
        results["students"][name] = per_k
        run.log_metrics(student=name, **{f"K{k}/{m}": v for k, r in per_k.items() for m, v in r.items()})
    save_sample_figure(panels, run.file("samples.png"))
    run.write_summary(results)
    return results


def sample_student(
    student_dir: str | Path,
    out: str | Path,
    num_steps: int,
    num_samples: int,
    seed: int,
    device: str | torch.device | None = None,
) -> Path:
    """Draw ``num_samples`` K-step samples (balanced labels) from a distilled student; writes
    ``samples.safetensors`` (float32 ``(M, ...)`` samples and int64 labels) and ``samples.png`` in ``out``.

    The noise is drawn on the CPU from ``seed`` (the same on every device); the student runs on ``device``
    (default: the best available) and the samples come back to the CPU.

    Raises:
        UserError: K outside 1..N, or no student in ``student_dir``.
    """
    dev = get_device(device)
    models, config, teacher = load_student(student_dir)
    if not 1 <= num_steps <= config.num_intervals:
        raise UserError(f"--steps K={num_steps} must lie in 1..N={config.num_intervals} (the distillation grid)")
    data = load_dataset(teacher.dataset or "digits")
    noise = EvalNoise.generate(tuple(data.x.shape[1:]), num_samples, teacher.num_classes, seed, num_steps)
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, config.num_intervals)
    models.to(dev)
    x_T, labels = noise.x_T.to(dev), noise.labels.to(dev)
    samples = _to_cpu(student_sample(models.student_eps, scheduler, x_T, labels, num_steps, noise.renoise))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "samples.safetensors", {"samples": samples, "labels": noise.labels})
    save_sample_figure([(f"{config.objective} K={num_steps}", samples)], out / "samples.png")
    return out / "samples.png"


# -- the demo ------------------------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """Settings of ``direct-cms demo`` (CD vs Direct CM on digits under identical settings)."""

    dataset: str = "digits"
    """``digits`` or ``ring``."""
    teacher_steps: int = 2000
    """Teacher training steps (cached in ``<out>/teacher``; reused if present)."""
    teacher_width: int = 16
    """Teacher UNet base width."""
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(steps=200, tensorboard=False))
    """Shared distillation settings (objective set per run)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Distillation seeds (each runs both objectives)."""
    smoke: bool = False
    """A ``--fast`` smoke run: the table says its numbers are not results."""
    device: str | None = None
    """Where the teacher trains, the students distil and the evaluation samples (default: the best available)."""


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, sd


def run_demo(config: DemoConfig, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Train or reuse the teacher, distil with ``cd`` and ``direct`` per seed, evaluate, aggregate over seeds.

    Returns:
        The summary: per objective and K, mean and sd over seeds of ODE error and quality; teacher lines;
        teacher calls per update and updates/s per objective.
    """
    out = Path(out)
    run = RunDir(out, overwrite=overwrite, flags=("--overwrite",))
    run.write_config(asdict(config), seed=config.seeds[0])
    teacher_dir = out / "teacher"
    wanted = {"dataset": config.dataset, "steps": config.teacher_steps, "width": config.teacher_width}
    wanted["seed"] = config.seeds[0]
    meta = teacher_dir / "teacher.json"
    cached = json.loads(meta.read_text()).get("demo_key") if meta.is_file() else None
    if cached != wanted:  # a cached teacher is reused only for the same dataset and settings
        if cached is not None:
            logger.info("cached teacher %s was trained for %s; training a new one", teacher_dir, cached)
        for old in out.glob("seed*"):  # their evaluations belong to the old teacher
            shutil.rmtree(old)
        teacher, losses = train_teacher(
            TeacherConfig(
                dataset=config.dataset,
                steps=config.teacher_steps,
                width=config.teacher_width,
                device=config.device,
                seed=config.seeds[0],
            )
        )
        save_teacher(
            teacher, teacher_dir, {"final_loss": losses[-1], "steps": config.teacher_steps, "demo_key": wanted}
        )
    else:
        logger.info("reusing cached teacher %s", teacher_dir)
    per_seed: list[dict[str, Any]] = []
    train_stats: dict[str, list[dict[str, Any]]] = {"cd": [], "direct": []}
    for seed in config.seeds:
        students = {}
        for objective in ("cd", "direct"):
            run_dir = out / f"seed{seed}" / objective
            dc = DistillConfig(
                **{
                    **asdict(config.distill),
                    "teacher": str(teacher_dir),
                    "objective": objective,
                    "seed": seed,
                    "device": config.device,
                }
            )
            train_stats[objective].append(distill(dc, run_dir, overwrite=True))
            students[objective] = run_dir
        ev = EvalConfig(**asdict(config.eval))
        if seed != config.seeds[0]:
            ev.sanity_samples = 0  # the teacher line does not depend on the distillation seed: compute it once
        eval_dir = out / f"seed{seed}" / "eval"
        if (eval_dir / "config.json").is_file():
            (eval_dir / "summary.json").unlink(missing_ok=True)
        per_seed.append(
            evaluate_students(students, eval_dir, ev, classifier_path=out / CLASSIFIER_FILE, device=config.device)
        )
    summary = aggregate(per_seed, train_stats, config)
    run.write_summary(summary)
    return summary


def aggregate(
    per_seed: list[dict[str, Any]], train_stats: dict[str, list[dict[str, Any]]], config: DemoConfig
) -> dict[str, Any]:
    """Mean and sd over seeds of every per-K metric; training cost per objective."""
    result: dict[str, Any] = {
        "seeds": config.seeds,
        "students": {},
        "teacher": {},
        "training": {},
        "smoke": config.smoke,
        "teacher_steps": config.teacher_steps,
    }
    for key in per_seed[0]["teacher"]:
        result["teacher"][key] = _mean_sd([s["teacher"][key] for s in per_seed if key in s["teacher"]])
    for name in per_seed[0]["students"]:
        result["students"][name] = {}
        for k, metrics in per_seed[0]["students"][name].items():
            result["students"][name][k] = {m: _mean_sd([s["students"][name][k][m] for s in per_seed]) for m in metrics}
    for objective, stats in train_stats.items():
        result["training"][objective] = {
            "teacher_calls_per_update": _mean_sd([s["teacher_calls_per_update"] for s in stats]),
            "updates_per_s": _mean_sd([s["updates_per_s"] for s in stats]),
            "final_loss": _mean_sd([s["mean_loss_last10"] for s in stats]),
        }
    return result


def format_table(summary: dict[str, Any], dataset: str = "digits") -> str:
    """The CD vs Direct CM comparison as a text table (mean ± sd over seeds)."""
    quality = (
        ["fd_real", "fd_teacher", "precision", "recall", "accuracy"]
        if dataset == "digits"
        else ["energy_real", "energy_teacher", "mode_precision", "mode_coverage"]
    )
    header = ["model", "K", "ode_error"] + quality
    rows = []

    def fmt(pair: tuple[float, float]) -> str:
        mean, sd = pair
        return f"{mean:.4f}±{sd:.4f}" if sd else f"{mean:.4f}"

    teacher = summary["teacher"]
    rows.append(
        [
            "teacher",
            f"N (nfe {teacher['nfe'][0]:.0f})",
            fmt(teacher["ode_error_vs_fine"]) + " (vs 1000-step)" if "ode_error_vs_fine" in teacher else "- (skipped)",
        ]
        + [fmt(teacher[q]) if q in teacher else "-" for q in quality]
    )
    for name, per_k in summary["students"].items():
        for k, metrics in per_k.items():
            rows.append([name, k, fmt(metrics["ode_error"])] + [fmt(metrics[q]) for q in quality])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.append("")
    for objective, stats in summary["training"].items():
        lines.append(
            f"{objective}: teacher calls/update {stats['teacher_calls_per_update'][0]:.1f}, "
            f"updates/s {stats['updates_per_s'][0]:.2f}, final loss {stats['final_loss'][0]:.4g}"
        )
    if summary.get("smoke"):
        lines.append(
            f"SMOKE RUN (--fast): a {summary.get('teacher_steps')}-step teacher and a few updates; these numbers test "
            "the pipeline and are not results"
        )
    return "\n".join(lines)
