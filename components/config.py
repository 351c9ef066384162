"""``params.yaml`` as typed configuration: parsed once, at the stage boundary.

Every section is a strict pydantic model: an unknown key, a wrong type or an out-of-range value is a
:class:`ConfigError` whose one-line message names the key, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from components.data.spec import SOURCE_KINDS
from components.errors import ConfigError, format_validation_error
from components.layout import NAME, check_name, relative_inside
from components.metric_names import REPORTED
from components.models.configs import FamilyConfig
from components.models.family import FAMILIES, get_family
from components.schema import Strict
from components.tune_config import TuneConfig


class DatasetConfig(Strict):
    """One dataset of ``prepare.datasets``; the limits below bound what a user source accepts (see the
    source functions in ``components.data``). Setting a limit on a source it does not apply to is refused."""

    source: Literal[
        "digits",
        "mnist5k",
        "imagefolder",
        "npz",
        "ring8",
        "grid25",
        "names",
        "surnames",
        "textfile",
        "notes",
        "audiofolder",
        "synthetic",
    ]
    path: str | None = Field(
        None,
        description="user sources (imagefolder, npz, textfile, audiofolder): a file or folder, relative to the project",
    )
    n_samples: PositiveInt | None = Field(
        None,
        description="samples to draw (synthetic sources; synthetic: 10,000 by default, generated and written chunk "
        "by chunk, so it may exceed memory); surnames: the n most frequent",
    )
    follow_symlinks: bool = Field(
        False, description="user sources: read through symlinks that lead out of 'path' or the project"
    )
    max_pixels: PositiveInt = Field(
        4096 * 4096, description="imagefolder: most pixels (width × height) of one image, checked before decoding"
    )
    max_classes: PositiveInt = Field(1000, description="imagefolder / npz: most classes (class folders, label ids)")
    min_unique: PositiveInt = Field(10, description="textfile: fewest distinct lines")
    max_line_chars: PositiveInt = Field(256, description="textfile: most characters in one line")
    n_per_class: PositiveInt = Field(84, description="notes: clips per pitch class (12 classes, 4 timbres)")
    sample_rate: PositiveInt = Field(8000, description="notes / audiofolder: samples per second (WAVs resampled)")
    seconds: PositiveFloat = Field(0.5, description="notes / audiofolder: clip length (longer WAVs are cut)")
    mono: bool = Field(True, description="audiofolder: refuse stereo files (false: keep their channels)")
    image_size: int = Field(
        32, ge=8, le=256, description="synthetic: side of the square grayscale images, in pixels (8..256)"
    )
    n_classes: int = Field(
        4, ge=1, le=8, description="synthetic: shape classes (disc, square, ring, diamond, cross, hbar, vbar, triangle)"
    )

    @model_validator(mode="after")
    def _path_for_user_sources(self) -> DatasetConfig:
        if self.source in ("imagefolder", "npz", "textfile", "audiofolder") and not self.path:
            raise ValueError(f"source {self.source!r} needs a 'path' (a file or folder of yours)")
        applies = {
            "follow_symlinks": ("imagefolder", "npz", "textfile", "audiofolder"),
            "max_pixels": ("imagefolder",),
            "max_classes": ("imagefolder", "npz", "audiofolder"),
            "min_unique": ("textfile",),
            "max_line_chars": ("textfile",),
            "n_per_class": ("notes",),
            "sample_rate": ("notes", "audiofolder"),
            "seconds": ("notes", "audiofolder"),
            "mono": ("audiofolder",),
            "image_size": ("synthetic",),
            "n_classes": ("synthetic",),
        }
        for key in sorted(self.model_fields_set & applies.keys()):
            if self.source not in applies[key]:
                raise ValueError(f"'{key}' applies to {'/'.join(applies[key])}, not to source {self.source!r}")
        return self

    def source_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the source function: every field but ``source`` (a source ignores the
        ones it does not read)."""
        return self.model_dump(exclude={"source"})


class SplitConfig(Strict):
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)


class PrepareConfig(Strict):
    seed: int = 0
    split: SplitConfig = SplitConfig()
    shard_mib: PositiveFloat = Field(
        16.0, description="size of each Parquet shard training workers read through Ray Data (about; MiB)"
    )
    datasets: dict[str, DatasetConfig] = Field(
        description="name -> dataset; the name is a folder name under data/prepared (a plain name, no path)"
    )

    @model_validator(mode="after")
    def _names_and_paths(self) -> PrepareConfig:
        for name, ds in self.datasets.items():
            check_name(name, where="prepare.datasets: a key")
            if ds.path is not None:
                relative_inside(ds.path, where=f"prepare.datasets.{name}.path")
        return self


class SimCLRConfig(Strict):
    """The label-free feature space: a SimCLR encoder (arXiv 2002.05709) trained per image dataset."""

    enabled: bool = Field(True, description="train it (false: evaluation reports the domain classifier's space only)")
    epochs: PositiveInt = 15
    batch_size: PositiveInt = Field(128, description="images per step; NT-Xent sees 2 views of each")
    lr: PositiveFloat = 2e-3
    temperature: PositiveFloat = Field(0.1, description="NT-Xent temperature τ (arXiv 2002.05709 Table 5, §B.9)")
    feature_dim: PositiveInt = Field(64, description="size of the representation h (before the projection head)")
    width: PositiveInt = Field(16, description="channels of the first conv layer (then 2x, 4x)")
    seed: int = 0


class FeaturesConfig(Strict):
    """The domain classifier (feature extractor) trained per image dataset, and the SimCLR encoder beside it."""

    epochs: PositiveInt = 8
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 2e-3
    seed: int = 0
    simclr: SimCLRConfig = SimCLRConfig()


SOURCE_FORM = "a source NAME@ALIAS or NAME/VERSION (a registered model) or an experiment's plain name"


class InitFromConfig(Strict):
    """``train.init_from``: start training from another model's weights (transfer learning).

    ``source`` is a registered model (``NAME@ALIAS`` or ``NAME/VERSION``) or another experiment of the same
    params.yaml (a plain name: its ``models/<experiment>``). A bare string is read as ``{source: ...}``.
    """

    source: str = Field(description="NAME@ALIAS or NAME/VERSION (registry), or an experiment of this params.yaml")
    strict: bool = Field(
        False, description="every parameter must load (same names, same shapes); false: the shape-compatible ones"
    )
    load: list[str] = Field(
        default_factory=list, description="name prefixes of the parameters to load (empty: all that fit)"
    )
    freeze: list[str] = Field(
        default_factory=list, description="name prefixes of loaded parameters kept fixed (e.g. net.wte, net.blocks.0)"
    )
    lr_mult: PositiveFloat = Field(1.0, description="learning-rate multiplier of the loaded (unfrozen) parameters")

    @model_validator(mode="before")
    @classmethod
    def _bare_source(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _source_form(self) -> InitFromConfig:
        if self.registered:
            name, _, ref = self.source.replace("@", "/", 1).partition("/")
            if not (NAME.match(name) and NAME.match(ref)) or ("/" in self.source and not ref.isdigit()):
                raise ValueError(SOURCE_FORM)
        elif not NAME.match(self.source):
            raise ValueError(SOURCE_FORM)
        return self

    @property
    def registered(self) -> bool:
        """A registered model (``NAME@ALIAS``, ``NAME/VERSION``), not an experiment of this params.yaml."""
        return "@" in self.source or "/" in self.source


class TrainConfig(Strict):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64  # per worker
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: PositiveFloat | None = None
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="learning-rate decay to 0 over the run, applied per step by the loop"
    )
    num_workers: int = Field(2, ge=0, description="Ray Train workers; 0 runs in-process (tests only)")
    cpus_per_worker: PositiveInt = 1
    use_gpu: bool | Literal["auto"] = "auto"
    gpus_per_worker: PositiveFloat = Field(
        1.0, le=1, description="GPU share per worker; below 1, workers share a GPU over gloo (NCCL refuses that)"
    )
    amp: bool = Field(True, description="bf16 autocast on CUDA; ignored on CPU")
    max_failures: int = Field(2, ge=0)
    max_loss: PositiveFloat = Field(1e6, description="an epoch-mean loss above this counts as divergence")
    start_timeout_s: PositiveFloat = Field(
        60.0,
        description="a cluster short of the workers' CPUs/GPUs (autoscaling?) gets this long before the stage fails",
    )
    seed: int = 0
    shuffle_buffer: PositiveInt = Field(
        65536,
        description="rows in each Ray worker's local shuffle buffer; at least its share of the split (rows / "
        "num_workers) shuffles the whole share every epoch, fewer bounds the worker's memory",
    )
    materialize_mib: float = Field(
        512.0,
        ge=0,
        description="a split up to this size once read (its decoded columns, not its compressed files) is read "
        "once into Ray's object store; a larger one streams from its shards every epoch (0: always stream)",
    )
    init_from: InitFromConfig | None = Field(
        None, description="transfer learning: start from a registered model's or another experiment's weights"
    )
    ingest_object_store_mib: PositiveFloat | None = Field(
        256.0,
        description="most of Ray's object store a streamed split's blocks may hold in flight (MiB; a few shards "
        "at least): bounds what ingest costs the node, and each worker's RSS, whatever the dataset's size; None: Ray "
        "Data's own budget (a share of the whole store, GiBs)",
    )
    max_worker_mib: PositiveFloat | None = Field(
        None,
        description="memory cap of each Ray Train worker (MiB of its private resident memory, RSS minus shared "
        "pages: Ray's object store is not counted), checked at every batch; a worker above it fails the run with "
        "one line. None: no cap. Off in-process (num_workers: 0)",
    )

    def shaping_dump(self) -> dict[str, Any]:
        """The fields as a dict for run hashes: ``init_from`` only when set (older hashes stay valid); never
        ``max_worker_mib`` or ``ingest_object_store_mib`` (memory bounds: the rows and their order are the same under
        any, so a rerun under other bounds resumes)."""
        memory = {"max_worker_mib", "ingest_object_store_mib"}
        return self.model_dump(exclude=memory | ({"init_from"} if self.init_from is None else set()))


class EvaluateConfig(Strict):
    n_samples: int = Field(2000, ge=10, description="samples drawn; the k-NN metrics (k up to 5) need more than k")
    batch_size: PositiveInt = 500
    seed: int = 0
    sampler: dict[str, Any] = Field(default_factory=dict, description="options passed to model.sample")
    fid_n_boot: int = Field(200, ge=0, description="images: bootstrap resamples of the FID interval (0: none)")
    utility_steps: int = Field(
        600, ge=0, description="images with classes: steps of the data-augmentation classifiers (0: skip)"
    )
    num_workers: int = Field(
        0,
        ge=0,
        description="Ray actors that draw the samples (and their features) in seeded chunks of batch_size, one GPU "
        "or CPU each (on a GPU cluster: one per GPU); 0 draws them in the stage's process. Same samples either way",
    )


class AuditConfig(Strict):
    """Gates; a model failing any of them is never promoted. Unset optional gates are measured, not gated."""

    max_fd_l2: PositiveFloat = 0.1
    max_fd_kl: PositiveFloat | None = None
    max_quality_gap: float | None = Field(
        None, gt=0, le=1, description="images: max - min over classes of precision / recall (the larger gap)"
    )
    max_memorization: float | None = Field(
        None, ge=0, le=1, description="images: nearest-neighbour-ratio memorization rate, overall and per class"
    )
    max_unlabelled: float | None = Field(
        None, ge=0, le=1, description="share of samples the attribute classifier cannot label (2-D: off every mode)"
    )


class SelectionConfig(Strict):
    metric: str = "fid"
    mode: Literal["min", "max"] = "min"


class ExperimentConfig(Strict):
    family: str
    dataset: str
    model: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    audit: AuditConfig = AuditConfig()
    selection: SelectionConfig = SelectionConfig()
    tune: TuneConfig | None = Field(None, description="hyperparameter search for `genfoundry tune` (optional)")
    _family_config: FamilyConfig | None = PrivateAttr(None)

    @property
    def family_config(self) -> FamilyConfig:
        """``model`` parsed by the family's ``Config`` (defaults filled in); :class:`Params` parses it once."""
        if self._family_config is None:
            self._family_config = get_family(self.family).parse(self.model)
        return self._family_config


class MlflowConfig(Strict):
    experiment: str = "genfoundry"
    model_prefix: str = "genfoundry"


class RayConfig(Strict):
    storage_path: str = "ray_results"
    num_cpus: PositiveInt | None = Field(None, description="CPUs of the local Ray instance (None: all)")


class RetrainConfig(Strict):
    """``genfoundry retrain``: what it watches, where it logs, and whether training starts from the champion."""

    watch: list[str] = Field(
        default_factory=lambda: ["data/raw"], description="files or folders whose new/changed/removed files it reports"
    )
    warm_start: bool = Field(
        False, description="train stages start from the registered champion's weights when the architecture matches"
    )
    log: str = Field("logs/retrain.jsonl", description="one JSON record per run is appended here (not a DVC output)")

    @model_validator(mode="after")
    def _paths_inside(self) -> RetrainConfig:
        relative_inside(self.log, where="retrain.log")
        for i, w in enumerate(self.watch):
            relative_inside(w, where=f"retrain.watch[{i}]")
        return self


class Params(Strict):
    prepare: PrepareConfig
    features: FeaturesConfig = FeaturesConfig()
    experiments: dict[str, ExperimentConfig]
    finetune: dict[str, ExperimentConfig] = Field(
        default_factory=dict,
        description="experiments that start from another experiment of this file (train.init_from.source): "
        "dvc.yaml's *_ft stages run them, train_ft@EXP depending on models/<parent>, so DVC trains the parent first",
    )
    mlflow: MlflowConfig = MlflowConfig()
    ray: RayConfig = RayConfig()
    retrain: RetrainConfig = RetrainConfig()
    _sections: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        both = sorted(set(self.experiments) & set(self.finetune))
        if both:
            raise ValueError(f"finetune: expected keys not also in experiments, got {both} in both")
        self._sections = {**dict.fromkeys(self.experiments, "experiments"), **dict.fromkeys(self.finetune, "finetune")}
        for key, exp in {**self.experiments, **self.finetune}.items():
            where = self.where(key)
            check_name(key, where=f"{self._sections[key]}: a key")
            if exp.family not in FAMILIES:
                raise ValueError(f"{where}.family: unknown family {exp.family!r}; expected one of {sorted(FAMILIES)}")
            if exp.dataset not in self.prepare.datasets:
                raise ValueError(
                    f"{where}.dataset: unknown dataset {exp.dataset!r}; "
                    f"expected one of prepare.datasets {sorted(self.prepare.datasets)}"
                )
            if self.prepare.datasets[exp.dataset].source == "synthetic" and exp.train.num_workers == 0:
                raise ValueError(
                    f"{where}.train.num_workers: expected >= 1 for {exp.dataset!r} (source synthetic: prepared chunk "
                    "by chunk, Parquet shards only, which Ray workers read), got 0"
                )
            # the family's hyperparameters, parsed once here (a ConfigError, not a ValueError: pydantic lets it
            # through with its own message, which names the experiment)
            exp._family_config = FAMILIES[exp.family].parse(exp.model, where=f"{where}.model")
            if exp.tune is not None:
                check_tune_space(key, exp, where=where)
            check_selection(key, exp, self.prepare.datasets[exp.dataset].source, where=where)
        check_sections(self.experiments, self.finetune)
        # from here on one table: every stage and report reads an experiment the same way, wherever it is listed
        # (the model is frozen; this is its own validator finishing the parse)
        self.__dict__["experiments"] = {**self.experiments, **self.finetune}
        check_lineage(self.experiments, self.where)
        return self

    def where(self, key: str) -> str:
        """Where experiment ``key`` is written in params.yaml: ``experiments.<key>`` or ``finetune.<key>``."""
        return f"{self._sections.get(key, 'experiments')}.{key}"

    def stage(self, name: str, key: str) -> str:
        """The dvc.yaml stage that runs ``name`` (train, evaluate, audit, register, summary) for ``key``:
        ``name@key``, or ``name_ft@key`` for an experiment under ``finetune:``."""
        return f"{name}_ft@{key}" if self._sections.get(key) == "finetune" else f"{name}@{key}"

    def experiment(self, key: str) -> ExperimentConfig:
        if key not in self.experiments:
            raise ConfigError(
                f"unknown experiment {key!r}; expected one of {sorted(self.experiments)} (params.yaml experiments "
                "and finetune)"
            )
        return self.experiments[key]


def check_sections(experiments: dict[str, ExperimentConfig], finetune: dict[str, ExperimentConfig]) -> None:
    """An experiment that starts from another experiment is listed under ``finetune`` (its ``train_ft`` stage
    depends on the parent's model: DVC cannot give one ``train`` foreach item a dependency the others lack), and
    only such experiments are."""
    for key, exp in experiments.items():
        init = exp.train.init_from
        if init is not None and not init.registered:
            raise ConfigError(
                f"experiments.{key}.train.init_from: expected a registered model (NAME@ALIAS, NAME/VERSION) in "
                f"experiments, got the experiment {init.source!r}; move {key!r} under finetune: (dvc.yaml's "
                f"train_ft stage then trains it after {init.source!r})"
            )
    for key, exp in finetune.items():
        init = exp.train.init_from
        if init is None or init.registered:
            got = "none" if init is None else f"the registered model {init.source!r}"
            raise ConfigError(
                f"finetune.{key}.train.init_from: expected an experiment of params.yaml to start from, got {got}; "
                "an experiment without one (or from a registered model) belongs under experiments:"
            )


def check_selection(key: str, exp: ExperimentConfig, source: str, *, where: str | None = None) -> None:
    """``selection.metric`` must be a number evaluate@EXP reports for this family on this kind of data."""
    kinds = SOURCE_KINDS[source]
    allowed = set().union(*(REPORTED[k] for k in kinds)) | {f.metric for f in FAMILIES[exp.family].likelihood}
    if exp.selection.metric not in allowed:
        raise ConfigError(
            f"{where or f'experiments.{key}'}.selection.metric: expected one of {sorted(allowed)} (what evaluate "
            "reports for "
            f"a {exp.family} model on {'/'.join(kinds)} data), got {exp.selection.metric!r}"
        )


def parents(experiments: dict[str, ExperimentConfig]) -> dict[str, str]:
    """Experiment -> the experiment of this params.yaml it starts from (``train.init_from``), where it has one."""
    return {
        key: exp.train.init_from.source
        for key, exp in experiments.items()
        if exp.train.init_from is not None and not exp.train.init_from.registered
    }


def check_lineage(experiments: dict[str, ExperimentConfig], where: Callable[[str], str] | None = None) -> None:
    """``train.init_from`` naming an experiment: it exists, has the same family, and no chain of them loops."""
    at = where or (lambda key: f"experiments.{key}")
    links = parents(experiments)
    for key, parent in links.items():
        loc = f"{at(key)}.train.init_from.source"
        if parent not in experiments:
            raise ConfigError(f"{loc}: expected an experiment of params.yaml {sorted(experiments)}, got {parent!r}")
        if experiments[parent].family != experiments[key].family:
            raise ConfigError(
                f"{loc}: expected an experiment of family {experiments[key].family!r}, got {parent!r} of family "
                f"{experiments[parent].family!r}"
            )
    for start in links:
        chain, node = [start], links[start]
        while node in links and node not in chain:
            chain.append(node)
            node = links[node]
        if node in chain:
            loop = chain[chain.index(node) :] + [node]
            raise ConfigError(
                f"{at(start)}.train.init_from: expected experiments without a cycle, got {' -> '.join(loop)}"
            )


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping, each experiment's family hyperparameters and tune space included."""
    try:
        return Params(**(raw or {}))
    except ValidationError as e:
        raise ConfigError(f"params.yaml: {format_validation_error(e)}") from None
    except ConfigError as e:  # raised by the cross-checks (family hyperparameters, tune space)
        raise ConfigError(f"params.yaml: {e}") from None


def apply_overrides(
    exp: ExperimentConfig, overrides: dict[str, Any], *, where: str = "model"
) -> tuple[TrainConfig, FamilyConfig]:
    """The experiment's train config and family config with ``{'train.lr': 0.01, 'model.width': 32}`` applied.

    Raises pydantic's ``ValidationError`` for a bad train value and :class:`ConfigError` for a bad model value.
    """
    train = exp.train.model_dump()
    model = dict(exp.model)
    for name, value in overrides.items():
        section, _, k = name.partition(".")
        (train if section == "train" else model)[k] = value
    return TrainConfig(**train), get_family(exp.family).parse(model, where=where)


def check_tune_space(key: str, exp: ExperimentConfig, *, where: str | None = None) -> None:
    """Every value a search may draw must be a valid setting: each choice, both ends of each range."""
    assert exp.tune is not None
    at = where or f"experiments.{key}"
    fields = get_family(exp.family).config.model_fields
    epochs = exp.tune.epochs or exp.train.epochs
    if exp.tune.grace_period > epochs:
        raise ConfigError(f"{at}.tune.grace_period = {exp.tune.grace_period} exceeds the {epochs} epochs of a trial")
    for name, dist in exp.tune.space.items():
        where = f"{at}.tune.space.{name}"
        section, _, k = name.partition(".")
        if section == "model" and k not in fields:
            raise ConfigError(f"{where}: {exp.family} has no hyperparameter {k!r}; expected one of {sorted(fields)}")
        for value in dist.candidates():
            try:
                apply_overrides(exp, {name: value}, where=f"{at}.model")
            except ValidationError as e:
                msg = format_validation_error(e, prefix=f"{at}.train")
                raise ConfigError(f"{where}: {dist.kind} value {value!r}: {msg}") from None
            except ConfigError as e:
                raise ConfigError(f"{where}: {dist.kind} value {value!r}: {e}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key]
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error or a duplicate key is one line with ``path:line:column``."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found; run genfoundry from the project root (the folder with params.yaml)")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_params(raw)
