"""sixlab-shared: device, seeding, logging, run directories and checkpoints for the sixlab packages.

Kept thin on purpose: nothing paper-specific lives here. The command-line conventions (shared options, config
dataclass -> options) are in :mod:`sixlab_shared.cli`, imported on its own (it loads typer).
"""

from sixlab_shared.atomic import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
)
from sixlab_shared.checkpoint import load_checkpoint, save_checkpoint
from sixlab_shared.config import config_option_callback, read_toml_config
from sixlab_shared.device import (
    DEVICE_ENV_VAR,
    autocast_dtype,
    choose_autocast_dtype,
    get_device,
    is_main_process,
    move_to_device,
    process_rank,
    set_tf32,
)
from sixlab_shared.errors import USER_ERROR_EXIT_CODE, UserError, exit_on_user_error
from sixlab_shared.files import load_npz, load_safetensors, require_file, require_output_file
from sixlab_shared.logging import progress, progress_enabled, setup_logging
from sixlab_shared.rundir import RunDir, environment_info
from sixlab_shared.seeding import derive_seed, make_generator, seed_everything, seed_worker, seeded
from sixlab_shared.threads import set_threads

__version__ = "0.1.0"

__all__ = [
    "DEVICE_ENV_VAR",
    "USER_ERROR_EXIT_CODE",
    "RunDir",
    "UserError",
    "__version__",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "autocast_dtype",
    "choose_autocast_dtype",
    "config_option_callback",
    "derive_seed",
    "environment_info",
    "exit_on_user_error",
    "get_device",
    "is_main_process",
    "load_checkpoint",
    "load_npz",
    "load_safetensors",
    "make_generator",
    "move_to_device",
    "process_rank",
    "progress",
    "progress_enabled",
    "read_toml_config",
    "require_file",
    "require_output_file",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
    "seeded",
    "set_tf32",
    "set_threads",
    "setup_logging",
]
