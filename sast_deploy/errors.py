"""User-facing errors: each carries a one-line message that says what went wrong and what to do."""


class SastError(Exception):
    """Base class; the CLI prints these as `error: <message>` without a traceback."""


class DataError(SastError):
    """A dataset is missing, or a recording is malformed."""


class SpecError(SastError):
    """A network spec is inconsistent or incomplete."""


class CheckpointError(SastError):
    """A checkpoint is truncated, tampered with, foreign or inconsistent."""


class ShapeError(SastError, ValueError):
    """An input tensor does not have the shape the network expects."""


class ConfigError(SastError):
    """A command-line argument or configuration value is invalid or inconsistent."""


class TrainingDiverged(SastError):
    """The loss became NaN or Inf; the run stopped and its last good checkpoint is kept."""


class BackendError(SastError):
    """A network cannot run on the chosen backend as given, or the backend is not available."""


class ArtifactError(SastError):
    """An exported network (Lava artifact, ONNX model) is truncated, foreign, outdated or inconsistent."""


class ExportError(SastError):
    """A trained model cannot be exported as asked (an op that does not fold, a missing run file)."""
