"""The study's typed parameters.

One dataclass holds every parameter of a study run; the DAG's Airflow Params are
derived from its field metadata (``param_specs``), so the trigger form and the
library cannot drift apart. Pure standard library: the DAG file imports this at
parse time.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StudyConfigError

# The paper's 10 frontal-plane landmarks. Participant's right is image left.
FRONTAL_BODYPARTS: tuple[str, ...] = (
    "right_hip",
    "left_hip",
    "right_knee",
    "left_knee",
    "right_ankle",
    "left_ankle",
    "right_medial_foot",
    "right_lateral_foot",
    "left_medial_foot",
    "left_lateral_foot",
)

# The named options of the parameters that have them, with what each means (the trigger form shows both).
BAD_VIDEO_POLICIES = {
    "fail": "any unreadable, truncated, too short or variable-frame-rate video fails the run (all are listed)",
    "exclude": "such videos are left out and listed in the log and the report"}
SPLIT_MODES = {
    "paper": "a random split inside each frame set (the study's design)",
    "fixed_test": "one test set shared by all sizes",
    "by_participant": "test frames only from participants never seen in training (cohort.json participant_pattern: "
                      "several videos per participant)"}
ENGINES = {
    "tensorflow": "DeepLabCut's TensorFlow engine, as the paper trained (CPU or a TensorFlow GPU)",
    "pytorch": "DeepLabCut 3's PyTorch engine and model, trained by posesweep with frames, augmentation and targets "
               "on the device (a GPU when there is one); DeepLabCut loads and evaluates its snapshots"}
NETWORKS = {
    "resnet_50": "ResNet-50 (paper); PyTorch engine: DeepLabCut 3's, with GroupNorm",
    "resnet_101": "ResNet-101",
    "resnet_50_bn": "PyTorch engine only: ResNet-50 with BatchNorm (timm resnet50), faster on a GPU"}
PRECISIONS = {
    "auto": "PyTorch engine on a GPU: bf16 autocast where it has bf16 tensor cores (A100, RTX 30xx, H100), fp16 "
            "autocast with dynamic loss scaling where it has fp16 ones only (V100, T4, RTX 20xx), else fp32",
    "fp32": "fp32 throughout (the TensorFlow engine and any CPU train in fp32 anyway): slower on a GPU; the "
            "setting for a network whose fp16 training overflowed"}
DLC_NET_TYPE = {"resnet_50": "resnet_50", "resnet_101": "resnet_101", "resnet_50_bn": "resnet_50"}  # DeepLabCut's name
INVALID_LABEL_POLICIES = {
    "fail": "any failing label expectation stops the run before training (the message lists the frames)",
    "exclude_frames": "frames named by a failing expectation are left out and listed in the report"}
FRAMES_PER_VIDEO_MAX = 500
# the trigger form's frame-set sizes: nested sets, one network each, of 4 frames at least
FRAME_SET_SIZE_SCHEMA = {"type": "array", "items": {"type": "integer", "minimum": 4}, "minItems": 1, "maxItems": 12}
MAX_SNAPSHOTS_PER_NETWORK = 100  # each is scored on every frame and kept (~100 MB each for a ResNet-50)


def count_test_frames(frame_set_size: int, train_fraction: float) -> int:
    """How many of a frame set's frames its split tests on: ``round(size x (1 - train_fraction))``; it trains on the
    rest."""
    return int(round(frame_set_size * (1 - train_fraction)))


def _param(default: Any, title: str, description: str, section: str, **schema: Any) -> Any:
    metadata = {"title": title, "description": description, "section": section, "schema": schema}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _choice(default: str, title: str, section: str, options: dict[str, str]) -> Any:
    """A parameter with named options: the form's description lists each option with its meaning."""
    description = "; ".join(f"{name}: {meaning}" for name, meaning in options.items()) + "."
    return _param(default, title, description, section, type="string", enum=list(options))


@dataclass(frozen=True)
class StudyConfig:
    """Parameters of one run of the training-parameter study (defaults: the paper)."""

    cohort: str = _param(
        "demo", "Cohort",
        "Cohort folder name under <data root>/cohorts (videos, or an existing DeepLabCut project).",
        "Cohort", type="string", minLength=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    )
    frames_per_video: int = _param(
        20, "Frames per video", "Frames picked per video by k-means clustering (paper: 18-20).",
        "Frames", type="integer", minimum=2, maximum=FRAMES_PER_VIDEO_MAX,
    )
    bad_video_policy: str = _choice("fail", "Bad videos", "Frames", BAD_VIDEO_POLICIES)
    frame_set_sizes: tuple[int, ...] = _param(
        (200, 400, 600, 800), "Frame-set sizes",
        "Nested training-frame set sizes, one network each (paper: 200, 400, 600, 800).",
        "Frames", **FRAME_SET_SIZE_SCHEMA,
    )
    train_fraction: float = _param(
        0.9, "Train fraction", "Share of each frame set used for training; the rest is the test set.",
        "Frames", type="number", exclusiveMinimum=0.0, exclusiveMaximum=1.0,
    )
    split_mode: str = _choice("paper", "Train/test split", "Frames", SPLIT_MODES)
    max_iterations: int = _param(
        250_000, "Maximum iterations", "Training iterations per network (paper: 250k).",
        "Training", type="integer", minimum=1,
    )
    snapshot_interval: int = _param(
        25_000, "Snapshot interval (iterations)",
        "A snapshot is saved and evaluated every this many iterations (paper: 25k). Must divide the maximum.",
        "Training", type="integer", minimum=1,
    )
    engine: str = _choice("tensorflow", "Engine", "Training", ENGINES)
    network: str = _choice("resnet_50", "Network", "Training", NETWORKS)
    batch_size: int = _param(
        1, "Batch size", "Training batch size (DeepLabCut's TensorFlow default: 1).",
        "Training", type="integer", minimum=1, maximum=64,
    )
    precision: str = _choice("auto", "Precision", "Training", PRECISIONS)
    allow_long_cpu_run: bool = _param(
        False, "Allow a CPU run longer than a day",
        "On the local backend without a GPU, a study whose expected training time exceeds 24 hours stops at its "
        "first task with the estimate; set this to run it anyway (or use the Kubernetes backend).",
        "Training", type="boolean",
    )
    allow_random_init: bool = _param(
        False, "Allow random initial weights",
        "Without a pretrained ImageNet checkpoint, start from random (BatchNorm-calibrated) weights. "
        "Errors are then far above the paper's; the report flags it.",
        "Training", type="boolean",
    )
    max_missing_label_fraction: float = _param(
        0.1, "Max missing-label fraction",
        "Validation fails when more than this share of a landmark's labels is missing.",
        "Labels", type="number", minimum=0.0, maximum=1.0,
    )
    px_per_mm: float = _param(
        0.0, "Scale (px per mm)",
        "Image scale for reporting errors in mm. 0: measured from the 61 cm landing square if the cohort's "
        "cohort.json gives its corners in the image, else errors in px only.",
        "Report", type="number", minimum=0.0,
    )
    pcutoff: float = _param(
        0.6, "Likelihood cutoff", "Errors are also reported for predictions with at least this likelihood "
        "(DeepLabCut's p-cutoff).", "Report", type="number", minimum=0.0, maximum=1.0,
    )
    invalid_labels: str = _choice("fail", "Invalid labels", "Labels", INVALID_LABEL_POLICIES)
    seed: int = _param(
        42, "Random seed", "Seeds frame selection, label simulation, the train/test split and training (initial "
        "weights, frame order, augmentation): the same seed on the same machine trains the same networks.",
        "Reproducibility", type="integer", minimum=0,
    )

    def __post_init__(self) -> None:
        if isinstance(self.frame_set_sizes, list):  # as JSON gives it; not int() each: 10.5 is refused, not 10
            object.__setattr__(self, "frame_set_sizes", tuple(self.frame_set_sizes))
        problems = self.problems()
        if problems:
            raise StudyConfigError(f"{len(problems)} parameter(s) out of range", details=problems,
                                   fix="change these values in the trigger form (or the run's conf) and trigger "
                                       "a new run")

    def problems(self) -> list[str]:
        found: list[str] = []
        for f in dataclasses.fields(self):
            schema = f.metadata["schema"]
            value = getattr(self, f.name)
            found += _schema_problems(f.name, value, schema)
        if found:
            return found
        if self.max_iterations % self.snapshot_interval:
            found.append(
                f"snapshot_interval={self.snapshot_interval} does not divide max_iterations={self.max_iterations}"
            )
        if self.network == "resnet_50_bn" and self.engine != "pytorch":
            found.append("network='resnet_50_bn' needs engine='pytorch' (the TensorFlow engine's resnet_50 "
                         "already uses BatchNorm)")
        if list(self.frame_set_sizes) != sorted(set(self.frame_set_sizes)):
            found.append(f"frame_set_sizes={list(self.frame_set_sizes)} must be strictly increasing")
        snapshots = self.max_iterations // self.snapshot_interval
        if snapshots > MAX_SNAPSHOTS_PER_NETWORK:
            found.append(f"max_iterations / snapshot_interval = {snapshots} snapshots per network; at most "
                         f"{MAX_SNAPSHOTS_PER_NETWORK} (raise snapshot_interval)")
        smallest = min(self.frame_set_sizes)
        if not self.splits_into_train_and_test(smallest):
            found.append(
                f"train_fraction={self.train_fraction} leaves an empty train or test set for {smallest} frames"
            )
        return found

    def splits_into_train_and_test(self, frames: int) -> bool:
        """Whether a frame set of this many frames gets at least one train and one test frame."""
        return 1 <= count_test_frames(frames, self.train_fraction) < frames

    def frame_set_sizes_within(self, frames: int) -> list[int]:
        """The frame-set sizes scaled to ``frames`` in the same proportions (the largest set becomes all of them):
        what to ask of a cohort that has fewer frames than the sizes need. Sizes that would coincide, or leave no
        train or no test frame, are dropped; empty where none is left."""
        largest = max(self.frame_set_sizes)
        scaled = sorted({round(size * frames / largest) for size in self.frame_set_sizes})
        smallest = FRAME_SET_SIZE_SCHEMA["items"]["minimum"]
        return [size for size in scaled if size >= smallest and self.splits_into_train_and_test(size)]

    @property
    def progress_interval(self) -> int:
        """Iterations between progress lines in the training log: five per snapshot, at least every 100."""
        return max(1, min(100, self.snapshot_interval // 5))

    @property
    def snapshot_iterations(self) -> list[int]:
        return list(range(self.snapshot_interval, self.max_iterations + 1, self.snapshot_interval))

    def to_json_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frame_set_sizes"] = list(self.frame_set_sizes)
        return d

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "StudyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StudyConfigError(f"unknown study parameters {unknown}", found=", ".join(unknown),
                                   allowed=", ".join(sorted(known)), fix="remove or correct the misspelt names")
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: Path) -> "StudyConfig":
        return cls.from_mapping(json.loads(Path(path).read_text()))


def _schema_problems(name: str, value: Any, schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, (list, tuple)),
    }
    if kind and not checks[kind](value):
        in_json = " (a JSON list in square brackets, e.g. [20, 40])" if kind == "array" else ""
        return [f"{name}={value!r} is not of type {kind}{in_json}"]
    out = []
    if "minimum" in schema and value < schema["minimum"]:
        out.append(f"{name}={value!r} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        out.append(f"{name}={value!r} is above the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        out.append(f"{name}={value!r} must be greater than {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        out.append(f"{name}={value!r} must be less than {schema['exclusiveMaximum']}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{name}={value!r} is not one of {schema['enum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append(f"{name} must not be empty")
    if "pattern" in schema:
        import re

        if not re.fullmatch(schema["pattern"].removeprefix("^").removesuffix("$"), value):  # "$" passes "x\n"
            if name == "cohort" and re.search(r"[/\\]", value.rstrip("/\\")):
                out.append(_cohort_given_as_a_path(value))
            else:
                out.append(f"{name}={value!r} must match {schema['pattern']}: letters, digits, '.', '_' and '-', "
                           f"starting with a letter or digit (a folder name; rename the folder, e.g. to "
                           f"{_folder_name_like(value)!r})")
    if kind == "array":
        if len(value) < schema.get("minItems", 0):
            out.append(f"{name} needs at least {schema['minItems']} entries")
        if len(value) > schema.get("maxItems", len(value)):
            out.append(f"{name} has {len(value)} entries, at most {schema['maxItems']}")
        for item in value:
            out += _schema_problems(f"{name}[]", item, schema.get("items", {}))
    return out


def _folder_name_like(value: str) -> str:
    """A cohort folder name the parameter check accepts, as close to ``value`` as it allows (Knie Studie ü 1 ->
    Knie_Studie_u_1)."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._-]+", "_", plain).strip("._-") or "cohort_1"


def _cohort_given_as_a_path(value: str) -> str:
    """What to do where the cohort was given as the path to its folder (a new lab's first try): the cohort is a
    folder's name under the data root's ``cohorts/``."""
    import ntpath
    import posixpath

    paths = ntpath if "\\" in value else posixpath
    folder = paths.normpath(value)
    parent, cohort = paths.split(folder)
    data_root, cohorts = paths.split(parent)
    name = _folder_name_like(cohort)
    what_to_do = (f"for this one, the data root {data_root} (make study DATA_ROOT={data_root} ..., or "
                  f"POSESWEEP_DATA_ROOT) and cohort {name!r}" if cohorts == "cohorts" and name == cohort else
                  f"copy this folder there as cohorts/{name} (a link to it is refused; links to its videos are "
                  f"read) and give cohort {name!r}")
    return (f"cohort={value!r} is a path: the cohort is the name of a folder in the data root's cohorts/ folder "
            f"(<data root>/cohorts/<cohort>; the data root is data/ in the repository, or POSESWEEP_DATA_ROOT): "
            f"{what_to_do}")


def param_specs(defaults: StudyConfig | None = None, cohorts: list[str] = ()) -> dict[str, dict[str, Any]]:
    """Keyword arguments for one ``airflow.sdk.Param`` per study parameter; ``cohorts``, the cohort folders
    there are, become the cohort field's proposals (a drop-down that still takes any name)."""
    defaults = defaults or StudyConfig()
    specs = {}
    for f in dataclasses.fields(StudyConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, tuple):
            value = list(value)
        specs[f.name] = {
            "default": value,
            "title": f.metadata["title"],
            "description": f.metadata["description"],
            "section": f.metadata["section"],
            **f.metadata["schema"],
        }
    pattern = re.compile(specs["cohort"]["pattern"])
    proposals = [name for name in cohorts if pattern.match(name)]  # a name the form would refuse is not proposed
    if proposals:
        specs["cohort"]["examples"] = proposals
    return specs
