"""Command-line interface of direct-cms: each verb maps its options onto one config dataclass and calls one job.

``train-teacher`` → :class:`~direct_cms.teacher.TeacherConfig`, ``distill`` →
:class:`~direct_cms.distill.DistillConfig`, ``sample`` → :class:`~direct_cms.jobs.SampleConfig`, ``evaluate`` →
:class:`~direct_cms.jobs.EvaluateConfig`; ``demo`` has its own small set of options (its config nests the others).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import typer

from direct_cms import __version__
from direct_cms.config import DistillConfig, EvaluateConfig, SampleConfig, TeacherConfig
from sixlab_shared import UserError, exit_on_user_error, is_main_process, setup_logging
from sixlab_shared.cli import (
    config_option,
    config_options,
    device_option,
    fast_option,
    make_app,
    out_option,
    overwrite_option,
    resume_option,
    seed_option,
    threads_option,
    verbose_option,
)

logger = logging.getLogger(__name__)

app = make_app(
    "direct-cms", "direct-cms: consistency distillation vs Direct CMs. See `direct-cms COMMAND --help`.", __version__
)


def _echo(text: str) -> None:
    """Print the result once (under torchrun / accelerate only the main process prints)."""
    if is_main_process():
        typer.echo(text)


def _given_options(ctx: typer.Context, config_cls: type) -> dict[str, Any]:
    """The config fields the user set, on the command line or in ``--config`` (not left at their defaults).

    Read from click's parameter sources, so an option given at its default value counts as given.
    """
    given = {}
    for f in dataclasses.fields(config_cls):
        source = ctx.get_parameter_source(f.name)
        if f.name in ctx.params and source is not None and source.name in _GIVEN:
            value = ctx.params[f.name]
            given[f.name] = list(value) if isinstance(value, tuple) else value
    return given


_GIVEN = ("COMMANDLINE", "DEFAULT_MAP", "ENVIRONMENT")  # click's ParameterSource: --config fills the default map


@app.command("train-teacher")
@exit_on_user_error
@config_options(TeacherConfig, exclude=("device",))
def train_teacher_cmd(
    out: Path = out_option(help="Folder for the teacher (unet/, scheduler/, teacher.json)."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: TeacherConfig,
) -> None:
    """Train a built-in teacher (class-conditional, with a null class for CFG) and save it to --out."""
    from direct_cms.teacher import save_teacher, train_teacher

    setup_logging(verbose)
    config = dataclasses.replace(config, device=device)
    config.validate()
    if (out / "teacher.json").is_file() and not overwrite:
        raise UserError(f"{str(out)!r} already holds a teacher; pass --overwrite or choose another --out")
    teacher, losses = train_teacher(config)
    save_teacher(teacher, out, {"final_loss": losses[-1], "config": dataclasses.asdict(config)})
    _echo(f"teacher  dataset={config.dataset}  steps={config.steps}  final_loss={losses[-1]:.4f}  ->  {out}")


@app.command("distill")
@exit_on_user_error
@config_options(DistillConfig, exclude=("device",))
def distill_cmd(
    ctx: typer.Context,
    out: Path = out_option(help="Run directory."),
    resume: bool = resume_option(),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: DistillConfig,
) -> None:
    """Distil a teacher (built-in, or an SD 1.5 / SDXL pipeline with --data) with --objective cd or direct."""
    from direct_cms.distill import distill

    setup_logging(verbose)
    if config.preset:
        config = DistillConfig.from_preset(config.preset, **_given_options(ctx, DistillConfig))
    summary = distill(dataclasses.replace(config, device=device), out, resume=resume, overwrite=overwrite)
    _echo(
        f"{config.objective}  steps={summary['steps']}  loss {summary['first_loss']} -> {summary['final_loss']}  "
        f"teacher_calls/update={summary['teacher_calls_per_update']}  updates/s={summary['updates_per_s']}"
    )


@app.command("sample")
@exit_on_user_error
@config_options(SampleConfig, exclude=("device",))
def sample_cmd(
    student: Path = typer.Option(..., "--student", help="A distill run directory."),
    out: Path = out_option(help="Folder for the samples (PNG; built-in students also samples.safetensors)."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: SampleConfig,
) -> None:
    """Sample a distilled student with the K-step multistep sampler (SD/SDXL: through a diffusers pipeline)."""
    from direct_cms.jobs import sample

    setup_logging(verbose)
    path = sample(student, out, dataclasses.replace(config, device=device), overwrite=overwrite)
    _echo(f"samples  K={config.steps}  ->  {path}")


@app.command("evaluate")
@exit_on_user_error
@config_options(EvaluateConfig, exclude=("device",))
def evaluate_cmd(
    student: list[Path] = typer.Option(..., "--student", help="Distill run directories (repeatable)."),
    out: Path = out_option(help="Evaluation folder (fixed noise and the teacher reference stored once, reused)."),
    overwrite: bool = overwrite_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
    *,
    config: EvaluateConfig,
) -> None:
    """ODE error per K against the teacher's N-step solve, and sample quality, for each student."""
    from direct_cms.jobs import evaluate

    setup_logging(verbose)
    _, table = evaluate(student, out, dataclasses.replace(config, device=device), overwrite=overwrite)
    _echo(table)


@app.command("demo")
@exit_on_user_error
def demo_cmd(
    out: Path = out_option(Path("runs/direct-cms-demo"), help="Run directory (teacher cached inside)."),
    fast: bool = fast_option(),
    overwrite: bool = overwrite_option(),
    dataset: str = typer.Option("digits", "--dataset", help="digits or ring."),
    num_seeds: int = typer.Option(1, "--num-seeds", help="Distillation seeds (each runs both objectives)."),
    steps: int = typer.Option(200, "--steps", help="Distillation updates per objective."),
    teacher_steps: int = typer.Option(2000, "--teacher-steps", help="Teacher training steps (if not cached)."),
    num_intervals: int = typer.Option(20, "--num-intervals", help="N, grid intervals."),
    guidance: float = typer.Option(3.0, "--guidance", help="Teacher CFG scale w."),
    lora_rank: int = typer.Option(8, "--lora-rank", help="LoRA rank."),
    num_samples: int = typer.Option(500, "--num-samples", help="Evaluation samples."),
    seed: int = seed_option(),
    device: str | None = device_option(),
    threads: int | None = threads_option(),
    config_file: str | None = config_option(),
    verbose: int = verbose_option(),
) -> None:
    """CD vs Direct CM on a teacher trained here, identical settings; prints the comparison table."""
    from direct_cms.experiment import DemoConfig, EvalConfig, format_table, run_demo

    setup_logging(verbose)
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
        smoke=fast,
        device=device,
    )
    summary = run_demo(cfg, out, overwrite=overwrite)
    _echo(format_table(summary, dataset))
    _echo(f"\nrun directory: {out}  (summary.json, seed*/eval/samples.png)")
    logger.debug(json.dumps(summary)[:200])


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
