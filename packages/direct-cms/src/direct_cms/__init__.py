"""direct-cms: consistency distillation and Direct consistency models (Vouitsis et al., 2024).

The public API: the paper's grid and parameterisation, teacher solvers with CFG, the two distillation objectives,
LoRA/full students, the multistep sampler as a diffusers scheduler, built-in and SD 1.5 / SDXL teachers, captioned
image data, distillation, sampling and evaluation.
"""

__version__ = "0.1.0"

import importlib
from typing import Any

# Lazy imports: `direct-cms --help` must not pay for torch/diffusers/peft imports.
_LOCATIONS = {
    "CaptionedImages": "captions",
    "DDIMSolver": "solvers",
    "EvaluateConfig": "config",
    "LORA_PRESETS": "lora",
    "PAPER_LORA_TARGETS": "lora",
    "SampleConfig": "config",
    "TextBatchSource": "captions",
    "TextCond": "conditioning",
    "TextEvalConfig": "text_evaluation",
    "TextTeacher": "text_teacher",
    "build_cache": "captions",
    "check_teacher_source": "text_teacher",
    "clip_score": "text_evaluation",
    "evaluate": "jobs",
    "evaluate_text": "text_evaluation",
    "export_pipeline": "text_sampling",
    "frechet_distance_dgm": "text_evaluation",
    "load_captioned_folder": "captions",
    "load_lora_into": "lora",
    "load_text_teacher": "text_teacher",
    "sample": "jobs",
    "sample_prompts": "text_sampling",
    "save_lora": "lora",
    "student_pipeline": "text_sampling",
    "without_lora": "lora",
    "Dataset": "data",
    "DemoConfig": "experiment",
    "DirectCMScheduler": "scheduler",
    "DistillConfig": "config",
    "EulerSolver": "solvers",
    "EvalConfig": "experiment",
    "EvalNoise": "evaluation",
    "GuidedTeacher": "guidance",
    "HeunSolver": "solvers",
    "MLPDenoiser": "networks",
    "StudentTeacher": "students",
    "Teacher": "teacher",
    "TeacherConfig": "config",
    "TimeGrid": "grid",
    "UNetEps": "guidance",
    "boundary_scalings": "parameterization",
    "build_digits_unet": "networks",
    "cd_target": "objectives",
    "cfg_combine": "guidance",
    "consistency_function": "parameterization",
    "direct_target": "objectives",
    "distill": "distill",
    "draw_batch": "data",
    "energy_distance": "metrics",
    "evaluate_students": "experiment",
    "format_table": "experiment",
    "frechet_distance": "metrics",
    "l2_loss": "objectives",
    "load_dataset": "data",
    "load_student": "distill",
    "load_teacher": "teacher",
    "make_solver": "solvers",
    "mode_stats": "metrics",
    "multistep_timesteps": "scheduler",
    "ode_error": "metrics",
    "precision_recall": "metrics",
    "predict_x0": "parameterization",
    "pseudo_huber_loss": "objectives",
    "quality_metrics": "evaluation",
    "run_demo": "experiment",
    "sample_student": "experiment",
    "save_teacher": "teacher",
    "solve": "solvers",
    "student_output": "objectives",
    "student_sample": "evaluation",
    "teacher_sample": "evaluation",
    "train_teacher": "teacher",
}

__all__ = sorted([*_LOCATIONS, "__version__"])  # each public name is written once, in _LOCATIONS


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(f"direct_cms.{_LOCATIONS[name]}"), name)
    raise AttributeError(f"module 'direct_cms' has no attribute {name!r}")
