"""Typed training recipes: dataclasses loaded from ``recipes/*.yaml``, with ``key.sub=value`` overrides.

The recipes ship inside the package (``inpaintkit/recipes/``; the repository's top-level
``recipes/`` points there), so ``inpaintkit train places2`` works from any folder and from a
non-editable install: :func:`resolve_recipe` takes a file path or a packaged recipe's name.

A recipe is a tree of dataclasses (:class:`Recipe`). YAML files are read with
``yaml.safe_load``; every key must name a field (an unknown key is an error that names its full
path, e.g. ``loss.gan_los_alpha``) and every value is checked against the field's type (both
by :func:`inpaintkit.typed.build`). A recipe may start from another one with
``base: other.yaml`` (resolved next to the including file); the including file's keys are
merged over the base's, section by section.

The resolved recipe is what a run saves beside itself (``runs/NAME/config.yaml``) and embeds
in its generator checkpoint, so a run can always be reproduced from its own folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from inpaintkit.io import write_text
from inpaintkit.masks import MaskConfig
from inpaintkit.model.generator import GeneratorConfig
from inpaintkit.typed import ConfigError, build, to_dict

#: The recipes that ship with inpaintkit.
RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass
class DataConfig:
    """What the loader feeds the networks (paper section 5: 256×256 training images)."""

    image_size: int = 256  # square training crop S; the global critic sees S×S
    batch_size: int = 16  # per process; with torchrun the global batch is batch_size × world size
    random_crop: bool = True
    random_flip: bool = True
    num_workers: int = 6  # DataLoader worker processes per rank (0 = load in the main process)
    val_split: str = "val"  # HDF5 split used for validation metrics and image grids


@dataclass
class CriticConfig:
    """The two WGAN-GP critics (paper appendix D)."""

    # Each hole's bounding box is resampled to local_size² for the local critic.
    local_size: int = 128
    # The first conv's width; appendix D: 64-128-256-512 (local), 64-128-256-256 (global).
    channels: int = 64
    # [ours] 0: the paper's. N > 0: every global critic call sees real, fake (and the penalty's
    # mask) rolled by one random offset in [0, N) px along each axis. The critic's stride-2
    # convolutions are anchored at the image's origin, and so is the periodic pattern of its
    # gradient, which the generator learns as a grid; a random phase averages it out
    # (docs/model.md, "The faint ~8 px grid"). The local critic's boxes start anywhere already.
    global_shift: int = 0
    # [ours] False: the paper's. True: both critics low-pass before each of their stride-2
    # subsamplings (model.critics.BinomialBlur), so their gradients with respect to the image
    # carry no lattice anchored at the origin of what they see, at 2, 4, 8 or 16 px; the
    # first layer convolves at stride 1 so the critic still sees the finest detail. Same
    # weights' shapes; the critics cost about a quarter more, a generator update 5 % more
    # (docs/benchmarks.md, "Anti-aliased critics").
    antialias: bool = False


@dataclass
class LossConfig:
    """Loss weights, named as in the authors' released ``inpaint.yml`` (generative_inpainting v1)."""

    l1_loss_alpha: float = 1.2  # spatially discounted ℓ1 inside the hole box (L1_LOSS_ALPHA)
    ae_loss_alpha: float = 1.2  # ℓ1 on the known region, "auto-encoder" loss (AE_LOSS_ALPHA)
    # Weight of the coarse output inside both ℓ1 terms (COARSE_L1_ALPHA).
    coarse_l1_alpha: float = 1.2
    gan_loss_alpha: float = 0.001  # adversarial term of the generator (GAN_LOSS_ALPHA)
    global_wgan_loss_alpha: float = 1.0  # global critic vs local critic (GLOBAL_WGAN_LOSS_ALPHA)
    wgan_gp_lambda: float = 10.0  # gradient-penalty weight λ (WGAN_GP_LAMBDA; WGAN-GP paper)
    # Lazy regularisation (Karras et al. 2020, StyleGAN2 section 3.1): the gradient penalty on
    # every k-th critic update only, weighted k x so its expected pull is unchanged. Its double
    # backward is the costliest part of a critic update (docs/benchmarks.md, "Where an
    # Algorithm 1 iteration's time goes"). 1 = every update, the paper's. [ours]
    gradient_penalty_every: int = 1
    # The penalty on the first gradient_penalty_batch samples of the batch only (0 = all, the
    # paper's): the penalty is a mean over samples, so a sub-batch estimates it unbiased. [ours]
    gradient_penalty_batch: int = 0
    spatial_discount_gamma: float = 0.9  # released config 0.9 (the paper's text says 0.99)
    # "bbox": γ^(distance to the hole's box edge), the released code; "distance": the paper's text.
    spatial_discount_mode: Literal["bbox", "distance"] = "bbox"
    # How both ℓ1 terms average (losses.reconstruction_loss): "batch" over all the batch's hole
    # (known) pixels, the released code, where every image had the same 128² hole; "image" each
    # image's mean, then the mean over images, so a thin stroke weighs as much as a big hole,
    # as in the per-image metrics the model is scored by. [ours]
    l1_normalization: Literal["batch", "image"] = "batch"
    # Weight of losses.lattice_loss in the generator's loss: the fills' detail spread unevenly
    # over the cells of a P-px lattice anchored at the origin, the grid the generator draws
    # as the critics pull detail out of it (docs/model.md, "The generator draws it"),
    # averaged over the periods P of lattice_periods. A lattice sees only the grids whose
    # period divides its own: watched at one period, the grid moved to another (stint 13).
    # 0 = off, the paper's. [ours]
    lattice_alpha: float = 0.0
    lattice_periods: tuple[int, ...] = (8,)
    # Count, per image and period, only the loss above the photo's own (losses.lattice_loss's
    # photos): without it a fill kept more even than its photo at most periods offset a grid
    # at one, and the loss pulled toward an evenness no photo has (stint 14). [ours]
    lattice_above_photo: bool = False
    # Weight of losses.feature_matching_loss (pix2pixHD): both critics' feature maps of each
    # completed image against its photo's. The WGAN term alone rewarded repeating patterns the
    # critics happened to score high (stints 8-14's checkerboards); matched feature by
    # feature, a fill is asked for the critics' view of its photo. 0 = off, the paper's. [ours]
    feature_matching_alpha: float = 0.0
    # Weight of losses.periodicity_loss: the fills' autocorrelation at 3-16 px shifts above
    # their photos', which sees a repeating pattern whatever its phase, where a lattice needs
    # one phase over the hole (stint 14). 0 = off, the paper's. [ours]
    periodicity_alpha: float = 0.0
    # Count the fills' autocorrelation below their photos' too: a checkerboard whose phase
    # drifts shows as an anti-correlation at its cells' width, which the loss above the
    # photos' never sees (stint 19, periodicity.alternation). [ours]
    periodicity_two_sided: bool = False
    # Measure the fills' autocorrelation in units of their photos' detail, not their own:
    # grain that repeats nowhere dilutes a fill's own autocorrelation, so the loss rewarded it
    # and a checkerboard hid under it (stint 20's noise inputs, periodicity.
    # residual_autocorrelation). [ours]
    periodicity_photo_units: bool = False
    # Weight of losses.detail_excess_loss: the fills' local detail (9 px RMS of the high-pass
    # residual) above their photos', over the hole. Forbids detail where the photo has none:
    # the speckled skies and grainy skin of stint 20's fills. 0 = off, the paper's. [ours]
    detail_excess_alpha: float = 0.0
    # Weight of the same budget on colour alone (losses.chroma_excess_loss): each pixel's
    # deviation from its grey, so that a fill's detail cannot be colour the photo lacks. The
    # budget fills of stint 21 put 0.6 as much colour detail as grey detail into their holes,
    # photos 0.13-0.28: the pink and green speckles. 0 = off, the paper's. [ours]
    chroma_excess_alpha: float = 0.0
    # Weight of losses.detail_deficit_loss: the fills' local detail below
    # detail_deficit_fraction × their photos', over the hole, the budget's other side. Gated
    # noise under the budget left skies clean and everything else flatter (stint 25). 0 = off,
    # the paper's. [ours]
    detail_deficit_alpha: float = 0.0
    detail_deficit_fraction: float = 0.5
    # Weight of losses.flat_gate_loss (needs model.noise_gates): the noise gates' mean over
    # the hole's pixels where the photo is flat, its local detail below flat_gate_detail (in
    # the training images' [-1, 1] units: 0.04 is 0.02 in [0, 1], about the flattest fifth of
    # the evaluation holes' pixels). Closes the noise on skies directly, where the budget
    # reaches the gates only through the noise (stint 26). 0 = off, the paper's. [ours]
    flat_gate_alpha: float = 0.0
    flat_gate_detail: float = 0.04


@dataclass
class OptimizerConfig:
    """Adam for generator and critics alike (released train.py: lr 1e-4, beta1 0.5, beta2 0.9)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    critic_steps: int = 5  # Algorithm 1: critic updates per generator update
    # The critics' learning rate (None: lr, the paper's). It follows lr's cool-down, scaled.
    critic_lr: float | None = None
    # One generator forward per generator step: the step's own batch and refined output (its
    # gradient cut) also feed one of the critic_steps critic updates, which then needs no batch
    # and no generator forward of its own. DeepFill v2's released code (critic_steps 1) works
    # this way; Algorithm 1 draws a fresh batch and forward for each critic update. [ours]
    share_generator_forward: bool = False
    # An exponential moving average of the generator's weights, which the run validates and
    # saves as generator.safetensors (inpaintkit.weight_average). Half-life in generator steps;
    # 0 = off (the paper's: its generator is the last weights). During a ramp-up the half-life
    # is capped at ema_rampup x steps so far (EDM's ema_rampup_ratio; 0 = no cap).
    ema_half_life: int = 0
    ema_rampup: float = 0.05


@dataclass
class ScheduleConfig:
    """How long to train and how often to log, validate and save (counted in generator steps)."""

    steps: int = 1_000_000
    # The first warmup_steps generator steps train on the reconstruction loss alone, critics
    # off (no critic forward, update or state change), as Iizuka et al. 2017 (GLCIC) trained
    # their completion network before switching the discriminator on. Ours, not the paper's
    # (which runs Algorithm 1 from step 0): a CPU budget buys ~6x more generator steps this way.
    warmup_steps: int = 0
    # Then critic_warmup_steps steps that train the critics alone (critic_steps updates each,
    # generator unchanged), so that a generator started from reconstruction-only weights
    # (--init-from) takes its first adversarial gradients from critics that already tell real
    # from fake, not from random ones. [ours]
    critic_warmup_steps: int = 0
    # Stop the run when validation hole PSNR falls more than this many dB below the best this
    # run has validated (its start included with --init-from): the adversarial phase can trade
    # all its accuracy for texture. The last checkpoint at or before the best is kept. 0 = off.
    max_validation_drop_db: float = 0.0
    # Warmup-stable-decay's cool-down (Hägele et al. 2024, "Scaling Laws and Compute-Optimal
    # Training Beyond Fixed Training Durations"): over the last lr_cooldown_steps of `steps`
    # both learning rates fall from optimizer.lr towards 0 as lr x (1 - sqrt(progress)), the
    # shape that beat linear and cosine decays there. A constant-lr run can be copied and the
    # copy cooled down to ship, while the original goes on at the constant lr later; the
    # paper's schedule is a constant lr (0 = no cool-down).
    lr_cooldown_steps: int = 0
    seed: int = 0
    log_every: int = 100  # scalars to TensorBoard (the only steps that synchronise with the device)
    image_every: int = 1000  # input | coarse | refined | attention | ground-truth grids
    val_every: int = 5000  # validation metrics on the val split
    val_images: int = 64
    checkpoint_every: int = 1000  # generator + full training state
    keep_every: int = 50_000  # also keep generator-STEP.safetensors every N steps (0 = never)


@dataclass
class PerformanceConfig:
    """Device-side speed switches (``compile`` is CUDA-only)."""

    # bf16 autocast for the generator and critic forwards, on CUDA and on CPUs with native bf16
    # (AVX512-BF16 or AMX; devices.has_native_bf16); the gradient penalty stays fp32.
    bf16: bool = True
    channels_last: bool = True  # NHWC memory format, what cuDNN's fast conv kernels want
    compile: bool = False  # torch.compile the generator and critics


@dataclass
class Recipe:
    """A full training recipe; every hyper-parameter of a run lives here."""

    name: str = "places2"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    critics: CriticConfig = field(default_factory=CriticConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)

    def __post_init__(self) -> None:
        size = self.data.image_size
        if size <= 0 or size % 8:
            raise ConfigError(f"data.image_size: {size} is not a positive multiple of 8")
        if not 0 < self.critics.local_size <= size or self.critics.local_size % 16:
            raise ConfigError(
                f"critics.local_size: {self.critics.local_size} must be a multiple of 16 "
                f"no larger than data.image_size ({size})"
            )
        if not 0 <= self.critics.global_shift <= size:
            raise ConfigError(
                f"critics.global_shift: {self.critics.global_shift} must be in 0 … "
                f"data.image_size ({size})"
            )
        for path, value in (
            ("data.batch_size", self.data.batch_size),
            ("optimizer.critic_steps", self.optimizer.critic_steps),
            ("schedule.log_every", self.schedule.log_every),
            ("schedule.image_every", self.schedule.image_every),
            ("schedule.val_every", self.schedule.val_every),
            ("schedule.checkpoint_every", self.schedule.checkpoint_every),
        ):
            if value <= 0:
                raise ConfigError(f"{path}: must be positive, got {value}")
        if self.optimizer.ema_half_life < 0 or self.optimizer.ema_rampup < 0:
            raise ConfigError(
                "optimizer.ema_half_life and optimizer.ema_rampup: must be >= 0, got "
                f"{self.optimizer.ema_half_life} and {self.optimizer.ema_rampup}"
            )
        if not 0 <= self.schedule.lr_cooldown_steps <= self.schedule.steps:
            raise ConfigError(
                f"schedule.lr_cooldown_steps: must be in 0..schedule.steps "
                f"({self.schedule.steps}), got {self.schedule.lr_cooldown_steps}"
            )
        for path, value in (
            ("schedule.warmup_steps", self.schedule.warmup_steps),
            ("schedule.critic_warmup_steps", self.schedule.critic_warmup_steps),
            ("schedule.max_validation_drop_db", self.schedule.max_validation_drop_db),
            ("loss.gradient_penalty_batch", self.loss.gradient_penalty_batch),
            ("loss.lattice_alpha", self.loss.lattice_alpha),
            ("loss.feature_matching_alpha", self.loss.feature_matching_alpha),
            ("loss.periodicity_alpha", self.loss.periodicity_alpha),
            ("loss.detail_excess_alpha", self.loss.detail_excess_alpha),
            ("loss.chroma_excess_alpha", self.loss.chroma_excess_alpha),
            ("loss.detail_deficit_alpha", self.loss.detail_deficit_alpha),
            ("loss.detail_deficit_fraction", self.loss.detail_deficit_fraction),
            ("loss.flat_gate_alpha", self.loss.flat_gate_alpha),
            ("loss.flat_gate_detail", self.loss.flat_gate_detail),
        ):
            if value < 0:
                raise ConfigError(f"{path}: must be >= 0, got {value}")
        if self.loss.flat_gate_alpha > 0 and not self.model.noise_gates:
            raise ConfigError("loss.flat_gate_alpha: needs model.noise_gates (it trains the gates)")
        if not self.loss.lattice_periods or min(self.loss.lattice_periods) < 2:
            raise ConfigError(
                "loss.lattice_periods: must be periods of at least 2 px, got "
                f"{list(self.loss.lattice_periods)}"
            )
        if self.loss.gradient_penalty_every <= 0:
            raise ConfigError(
                f"loss.gradient_penalty_every: must be positive, got {self.loss.gradient_penalty_every}"
            )
        if self.optimizer.critic_lr is not None and self.optimizer.critic_lr <= 0:
            raise ConfigError(
                f"optimizer.critic_lr: must be positive, got {self.optimizer.critic_lr}"
            )


# --------------------------------------------------------------------------- files and overrides


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, recursing into mappings present in both."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_recipe_dict(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a recipe file with its ``base:`` chain merged in (not yet typed)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' include cycle ({' -> '.join(p.name for p in _seen)})")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read recipe ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}"
        )
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    return _merge(read_recipe_dict(path.parent / base, (*_seen, path)), data)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a raw recipe mapping (values typed later by build)."""
    data = _merge({}, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        parts = key.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: depth + 1])} is not a section"
                )
            node = child
        node[parts[-1]] = value
    return data


def packaged_recipes() -> dict[str, str]:
    """Name -> one-line description (the file's first comment line) of every packaged recipe."""
    recipes = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        first = next(
            (
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("#")
            ),
            "",
        )
        recipes[path.stem] = first.lstrip("#").strip()
    return recipes


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: ``name_or_path`` itself when it is a file, else the packaged recipe of that name.

    ``places2``, ``places2.yaml`` and ``path/to/my.yaml`` all work; anything else is a
    :class:`ConfigError` that lists the packaged names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = RECIPE_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    names = ", ".join(packaged_recipes())
    raise ConfigError(
        f"{name_or_path}: no such recipe file, nor a packaged recipe (packaged: {names})"
    )


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe (a file, or a packaged recipe's name; following ``base:``), apply overrides, type-check it all."""
    data = apply_overrides(read_recipe_dict(resolve_recipe(path)), overrides)
    try:
        return build(Recipe, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """A :class:`Recipe` from a resolved mapping (e.g. a checkpoint's embedded config)."""
    return build(Recipe, data)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (every field, defaults included)."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe atomically (``runs/NAME/config.yaml``)."""
    write_text(path, recipe_to_yaml(recipe))
