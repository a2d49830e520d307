"""Event data: readers, datasets (embedded and local), framing, cached frames."""
from .datasets import DATASETS, Recordings, dataset_info, recordings, stratified_split
from .events import read_nmnist, validate_events
from .frames import FrameSet, load_frames
from .framing import INPUT_NORMS, count_frames, event_window, frame_shape, normalize

__all__ = [
    "DATASETS", "Recordings", "dataset_info", "recordings", "stratified_split", "read_nmnist",
    "validate_events", "FrameSet", "load_frames", "INPUT_NORMS", "count_frames", "event_window",
    "frame_shape", "normalize",
]
