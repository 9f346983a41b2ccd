"""Command-line interface of direct-cms (thin: parses options and calls the library)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from direct_cms import __version__
from sixlab_shared import UserError, config_option_callback, exit_on_user_error, setup_logging

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="direct-cms",
    help="direct-cms: consistency distillation vs Direct CMs. See `direct-cms COMMAND --help`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

CONFIG_OPTION = typer.Option(
    None, "--config", is_eager=True, callback=config_option_callback, help="TOML file setting any option."
)
SEED_OPTION = typer.Option(0, "--seed", help="Random seed.")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu, cuda or mps (default: best available).")
VERBOSE_OPTION = typer.Option(0, "-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"direct-cms {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """direct-cms command-line tool."""


def _ks(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise UserError(f"--ks must be comma-separated integers such as 1,2,4,8, got {text!r}") from err
    if not values or min(values) < 1:
        raise UserError(f"--ks must hold integers >= 1, got {text!r}")
    return values


def _check_device(device: str | None) -> None:
    if device is not None and device not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device must be cpu, cuda or mps, got {device!r}")


def _cpu_only(verb: str, device: str | None) -> None:
    # sample/evaluate/demo run their models on the CPU in this version; refuse rather than ignore another device.
    _check_device(device)
    if device not in (None, "cpu"):
        raise UserError(f"`direct-cms {verb}` runs on the CPU in this version; omit --device or pass --device cpu")


@app.command("train-teacher")
@exit_on_user_error
def train_teacher_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for the teacher (unet/, scheduler/, teacher.json)."),
    dataset: str = typer.Option("digits", "--dataset", help="digits (UNet2DModel) or ring (2-D MLP)."),
    steps: int = typer.Option(2000, "--steps", help="Training steps."),
    batch_size: int = typer.Option(64, "--batch-size", help="Batch size."),
    lr: float = typer.Option(2e-3, "--lr", help="Adam learning rate (cosine decay)."),
    label_dropout: float = typer.Option(0.1, "--label-dropout", help="Null-class probability (for CFG)."),
    width: int = typer.Option(16, "--width", help="Base width of the network."),
    schedule: str = typer.Option("scaled_linear", "--schedule", help="scaled_linear (SDXL, the paper's) or linear."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a teacher already in --out."),
    seed: int = SEED_OPTION,
    device: str | None = DEVICE_OPTION,
    config: Path | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Train a built-in teacher (class-conditional, with a null class for CFG) and save it to --out."""
    from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher

    setup_logging(verbose)
    _check_device(device)
    cfg = TeacherConfig(dataset, steps, batch_size, lr, label_dropout, schedule, width, seed, device)
    cfg.validate()
    if (out / "teacher.json").is_file() and not overwrite:
        raise UserError(f"{str(out)!r} already holds a teacher; pass --overwrite or choose another --out")
    teacher, losses = train_teacher(cfg)
    save_teacher(teacher, out, {"final_loss": losses[-1], "config": {k: v for k, v in vars(cfg).items()}})
    typer.echo(f"teacher  dataset={dataset}  steps={steps}  final_loss={losses[-1]:.4f}  ->  {out}")


@app.command("distill")
@exit_on_user_error
def distill_cmd(
    teacher: str = typer.Option(..., "--teacher", help="Teacher folder (train-teacher --out) or diffusers model."),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    objective: str = typer.Option("cd", "--objective", help="cd (consistency distillation) or direct (Direct CM)."),
    num_intervals: int = typer.Option(20, "--num-intervals", help="N, grid intervals (must divide T=1000)."),
    solver: str = typer.Option("ddim", "--solver", help="Teacher solver: ddim, euler or heun."),
    guidance: float = typer.Option(3.0, "--guidance", help="Fixed Imagen-form CFG scale w (>= 0)."),
    loss: str = typer.Option("l2", "--loss", help="l2 or huber (pseudo-Huber)."),
    huber_c: float = typer.Option(1e-3, "--huber-c", help="c of the pseudo-Huber loss."),
    student: str = typer.Option("lora", "--student", help="lora or full."),
    lora_rank: int = typer.Option(8, "--lora-rank", help="LoRA rank."),
    lora_targets: str = typer.Option(
        "to_q,to_k,to_v,to_out.0,conv1,conv2,time_emb_proj,fc_in,fc_hidden", "--lora-targets", help="Module names."
    ),
    ema_decay: float = typer.Option(0.0, "--ema-decay", help="EMA target decay for cd (0 = stop-grad online)."),
    steps: int = typer.Option(200, "--steps", help="Optimiser updates."),
    batch_size: int = typer.Option(32, "--batch-size", help="Micro-batch size per process."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per update."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Checkpoint every M updates."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Also log to TensorBoard."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh in an --out that holds a run."),
    seed: int = SEED_OPTION,
    device: str | None = DEVICE_OPTION,
    config: Path | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Distil a teacher into a few-step student with --objective cd or direct."""
    from direct_cms.distill import DistillConfig, distill

    setup_logging(verbose)
    _check_device(device)
    cfg = DistillConfig(
        teacher=teacher,
        objective=objective,
        num_intervals=num_intervals,
        solver=solver,
        guidance=guidance,
        loss=loss,
        huber_c=huber_c,
        student=student,
        lora_rank=lora_rank,
        lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()],
        ema_decay=ema_decay,
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        mixed_precision=mixed_precision,
        checkpoint_every=checkpoint_every,
        tensorboard=tensorboard,
        seed=seed,
        device=device,
    )
    summary = distill(cfg, out, resume=resume, overwrite=overwrite)
    typer.echo(
        f"{objective}  steps={steps}  loss {summary['first_loss']} -> {summary['final_loss']}  "
        f"teacher_calls/update={summary['teacher_calls_per_update']}  updates/s={summary['updates_per_s']}"
    )


@app.command("sample")
@exit_on_user_error
def sample_cmd(
    student: Path = typer.Option(..., "--student", help="A distill run directory."),
    out: Path = typer.Option(..., "--out", help="Folder for samples.safetensors and samples.png."),
    steps: int = typer.Option(4, "--steps", help="K sampling steps (1..N)."),
    num_samples: int = typer.Option(100, "--num-samples", help="Samples (labels balanced over classes)."),
    seed: int = SEED_OPTION,
    device: str | None = DEVICE_OPTION,
    config: Path | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Sample a distilled student with the K-step multistep sampler."""
    from direct_cms.experiment import sample_student

    setup_logging(verbose)
    _cpu_only("sample", device)
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    path = sample_student(student, out, steps, num_samples, seed)
    typer.echo(f"samples  K={steps}  n={num_samples}  ->  {path}")


@app.command("evaluate")
@exit_on_user_error
def evaluate_cmd(
    student: list[Path] = typer.Option(..., "--student", help="Distill run directories (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Evaluation folder (fixed noise stored once and reused)."),
    ks: str = typer.Option("1,2,4,8", "--ks", help="Student step counts K."),
    num_samples: int = typer.Option(500, "--num-samples", help="Fixed initial noises."),
    sanity_samples: int = typer.Option(64, "--sanity-samples", help="Samples for teacher N vs 1000 (0 skips)."),
    sanity_intervals: int = typer.Option(1000, "--sanity-intervals", help="Grid of the fine teacher solve."),
    classifier: Path | None = typer.Option(
        None, "--classifier", help="Digit-classifier file (trained and saved there if missing; default in --out)."
    ),
    seed: int = SEED_OPTION,
    device: str | None = DEVICE_OPTION,
    config: Path | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """ODE error per K against the teacher's N-step solve, and sample quality, for each student."""
    from direct_cms.experiment import EvalConfig, evaluate_students, format_table

    setup_logging(verbose)
    _cpu_only("evaluate", device)
    k_values = _ks(ks)
    if num_samples < 2:
        raise UserError(f"--num-samples must be >= 2, got {num_samples}")
    names = {}
    for path in student:
        if not (path / "student.safetensors").is_file():
            raise UserError(f"{str(path)!r} holds no student.safetensors; pass the --out of a finished distill run")
        names[f"{path.name}" if path.name not in names else str(path)] = path
    cfg = EvalConfig(num_samples, k_values, sanity_samples, seed, sanity_intervals)
    results = evaluate_students(names, out, cfg, classifier_path=classifier)
    summary = {
        "teacher": {k: (v, 0.0) for k, v in results["teacher"].items()},
        "students": {
            n: {k: {m: (v, 0.0) for m, v in r.items()} for k, r in per.items()}
            for n, per in results["students"].items()
        },
        "training": {},
    }
    dataset = "digits" if "fd_real" in results["teacher"] else "ring"
    typer.echo(format_table(summary, dataset))


@app.command("demo")
@exit_on_user_error
def demo_cmd(
    out: Path = typer.Option(Path("runs/direct-cms-demo"), "--out", help="Run directory (teacher cached inside)."),
    fast: bool = typer.Option(False, "--fast", help="Seconds-long smoke version (tiny budgets)."),
    dataset: str = typer.Option("digits", "--dataset", help="digits or ring."),
    num_seeds: int = typer.Option(1, "--num-seeds", help="Distillation seeds (each runs both objectives)."),
    steps: int = typer.Option(200, "--steps", help="Distillation updates per objective."),
    teacher_steps: int = typer.Option(2000, "--teacher-steps", help="Teacher training steps (if not cached)."),
    num_intervals: int = typer.Option(20, "--num-intervals", help="N, grid intervals."),
    guidance: float = typer.Option(3.0, "--guidance", help="Teacher CFG scale w."),
    lora_rank: int = typer.Option(8, "--lora-rank", help="LoRA rank."),
    num_samples: int = typer.Option(500, "--num-samples", help="Evaluation samples."),
    seed: int = SEED_OPTION,
    device: str | None = DEVICE_OPTION,
    config: Path | None = CONFIG_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """CD vs Direct CM on a teacher trained here, identical settings; prints the comparison table."""
    from direct_cms.distill import DistillConfig
    from direct_cms.experiment import DemoConfig, EvalConfig, format_table, run_demo

    setup_logging(verbose)
    _cpu_only("demo", device)
    if dataset not in ("digits", "ring"):
        raise UserError(f"--dataset must be digits or ring, got {dataset!r}")
    if num_seeds < 1:
        raise UserError(f"--num-seeds must be >= 1, got {num_seeds}")
    if fast:
        steps, teacher_steps, num_samples, num_intervals = (
            min(steps, 4),
            min(teacher_steps, 10),
            min(num_samples, 16),
            10,
        )
    cfg = DemoConfig(
        dataset=dataset,
        teacher_steps=teacher_steps,
        distill=DistillConfig(
            steps=steps,
            num_intervals=num_intervals,
            guidance=guidance,
            lora_rank=lora_rank,
            tensorboard=False,
            checkpoint_every=max(steps, 1),
        ),
        eval=EvalConfig(
            num_samples=num_samples,
            ks=[k for k in (1, 2, 4, 8) if k <= num_intervals],
            sanity_samples=0 if fast else 64,
            classifier_steps=50 if fast else 400,
            seed=seed,
        ),
        seeds=[seed + i for i in range(num_seeds)],
    )
    summary = run_demo(cfg, out, overwrite=True)  # a demo re-runs in place; its cached teacher is reused
    typer.echo(format_table(summary, dataset))
    typer.echo(f"\nrun directory: {out}  (summary.json, seed*/eval/samples.png)")
    logger.debug(json.dumps(summary)[:200])


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
