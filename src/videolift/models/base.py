"""The contract between trainers/generators and a text-to-video model family.

A new T2V family (HunyuanVideo, Mochi, ...) is one new module implementing ``T2VModelSpec``
(usually by subclassing ``DiffusersT2VSpec``) plus one line in ``videolift.models.families``;
trainers and the generation stage only talk to this interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from videolift.core.errors import OptionError, UsageError, VideoliftError
from videolift.core.jsonl import read_json

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def auto_dtype(device: Any) -> str:
    """``dtype: auto``: bfloat16 on a GPU (where it runs), float32 elsewhere."""
    on_gpu = torch.device(device).type == "cuda"
    return "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}") from None


@dataclass(frozen=True)
class SamplerSettings:
    """Everything needed to regenerate a video exactly (recorded in generation manifests)."""

    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: bool = False
    frames: int = 49
    height: int = 480
    width: int = 720
    fps: int = 8
    max_sequence_length: int | None = None  # None: the model's own
    negative_prompt: str | None = None  # None: the pipeline's own (the empty prompt)
    guidance_2: float | None = (
        None  # a two-expert pipeline's low-noise steps'; None: none passed (one transformer)
    )

    def __post_init__(self) -> None:
        check_guidance(self.guidance)
        if self.guidance_2 is not None:
            check_guidance(self.guidance_2, "--guidance-2")


def check_guidance(guidance: float, option: str = "--guidance") -> None:
    """Refuse a guidance scale that is not a finite number >= 0. A NaN one samples NaN latents into black
    videos and writes `"guidance": NaN` (not JSON) into the manifest; a negative one is no guidance (the
    pipelines guide above 1) under a misleading name."""
    if not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(f"{option} {guidance}: must be a finite number, at least 0 (1 or less: no guidance)")


class T2VModelSpec(Protocol):
    """What a T2V family provides. Tensors are torch tensors; videos are uint8 (T, H, W, 3) arrays."""

    family: str

    def load(
        self, model: str, *, dtype: Any, device: Any, lora: str | None = None, without: tuple[str, ...] = ()
    ) -> Any:
        """Load a pipeline (local directory or Hub id), optionally with LoRA weights applied; on
        ``device``, or where it loaded (CPU memory) for None; the components ``without`` weights."""

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        """The model's own frames/height/width for the ones left unset."""

    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        """Raise VideoliftError for sizes/frames the model cannot produce."""

    def check_trainable(self, pipe: Any) -> None:
        """Raise VideoliftError if this pipeline can generate but not be fine-tuned by videolift."""

    def max_sequence_length(self, pipe: Any, settings: SamplerSettings | None = None) -> int:
        """Text tokens the prompt is padded/cut to (recorded, so cached embeddings match sampling)."""

    def generate(
        self, pipe: Any, prompts: list[str], seeds: list[int], settings: SamplerSettings
    ) -> list[np.ndarray]:
        """One video per (prompt, seed), each uint8 (T, H, W, 3)."""

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> Any:
        """Text conditioning, detached, (B, L, D)."""

    def encode_videos(self, pipe: Any, videos: list[np.ndarray]) -> Any:
        """VAE latent distribution parameters of each video, for caching."""

    def sample_latents(self, pipe: Any, parameters: Any, generator: Any = None) -> Any:
        """A latent drawn from cached distribution parameters, normalised and laid out as the
        transformer takes it."""

    def training_loss(
        self, pipe: Any, transformer: Any, latents: Any, text: Any, *, timesteps: Any, noise: Any
    ) -> Any:
        """The family's own diffusion loss, per sample (B,), without reduction over the batch.
        ``timesteps`` are integers in [0, num_train_timesteps): higher is noisier. ``latents`` and
        ``noise`` are fp32 and the noising and the loss stay fp32; the transformer's inputs take
        ``text``'s dtype (the trainable weights', which under DeepSpeed are bf16 / fp16)."""


# What `align` writes under its OUT: the full pipeline, or the LoRA for the base model (align/export.py).
FULL_DIR, LORA_DIR = "pipeline", "lora"
# In a LoRA directory trained on another component than ``transformer`` (a Wan 2.2 A14B's low-noise expert):
# {"component": "transformer_2"}, so that loading puts it there (diffusers: load_into_transformer_2=True).
EXPERT_FILE = "videolift_expert.json"


def lora_component(lora: str | Path) -> str:
    """The pipeline component a LoRA directory adapts (``EXPERT_FILE``'s, else ``transformer``)."""
    try:
        return str(read_json(Path(lora) / EXPERT_FILE)["component"])
    except (OSError, ValueError, KeyError, TypeError, VideoliftError):
        return "transformer"


def not_a_pipeline(model: str) -> VideoliftError:
    """The error for a local directory without model_index.json; for an `align` run's directory it
    says where the aligned model inside is (its OUT/pipeline, or OUT/lora on top of the base)."""
    local, hint = Path(model), ""
    if (local / FULL_DIR / "model_index.json").exists():
        hint = f"; it is an align run: its model is {local / FULL_DIR}"
    elif (local / LORA_DIR).is_dir():
        try:
            base = read_json(local / "align_config.json")["model"]
        except (OSError, ValueError, KeyError, TypeError, VideoliftError):
            base = "BASE"
        hint = (
            f"; it is an align run with a LoRA: load {local / LORA_DIR} on top of {base} "
            f"(eval: --model {base}+{local / LORA_DIR}; generate: --model {base} --lora {local / LORA_DIR})"
        )
    return VideoliftError(f"{model}: not a diffusers pipeline directory (no model_index.json){hint}")


def check_lora_dir(lora: str | Path) -> None:
    """Refuse what ``pipe.load_lora_weights`` cannot load from a directory, before any work: a missing
    path, or a directory without a weights file (an align run's OUT, whose LoRA is OUT/lora). diffusers
    takes a weights file itself, or a directory's ``pytorch_lora_weights.safetensors``, or else its one
    ``.safetensors`` file."""
    path = Path(lora)
    if not path.exists():
        raise VideoliftError(f"{lora}: LoRA directory not found")
    if _holds_weights(path) or (path.is_file() and path.suffix in WEIGHT_SUFFIXES):
        return
    inside = path / LORA_DIR
    hint = f"; it is an align run: its LoRA is {inside}" if _holds_weights(inside) else ""
    raise VideoliftError(f"{lora}: not a LoRA directory (no .safetensors or .bin weights in it){hint}")


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _holds_weights(directory: Path) -> bool:
    return directory.is_dir() and any(
        f.suffix in WEIGHT_SUFFIXES and f.is_file() for f in directory.iterdir()
    )


def _tiling_hint(vae: Any) -> str:
    """Why a size came out wrong when the VAE tiles: diffusers sizes CogVideoX's tiles by the VAE's config
    (half its sample size), and they line up only for the frame sizes that config was made for."""
    if not getattr(vae, "use_tiling", False):
        return ""
    tiles = getattr(vae, "tile_sample_min_height", "?"), getattr(vae, "tile_sample_min_width", "?")
    return (
        f" with --vae-tiling: diffusers' tiles of {tiles[0]}x{tiles[1]} px, set by this VAE's config, do not "
        "add up to these frames; run without tiling"
    )


def empty_component(model: str, name: str) -> Any:
    """Component ``name`` of the pipeline ``model`` built from its config on the meta device: its class, config
    and structure, no weights (none is read; a Hub model's configs from the local cache)."""
    import importlib

    from accelerate import init_empty_weights

    from videolift.models.families import load_config, model_index

    library, class_name = (model_index(model) or {})[name]
    component = getattr(importlib.import_module(library), class_name)
    config = load_config(component, model, subfolder=name, local_files_only=True)
    with init_empty_weights(include_buffers=True):
        return component.from_config(config)


def is_empty(component: Any) -> bool:
    """An ``empty_component``: a module whose weights were never loaded."""
    return isinstance(component, torch.nn.Module) and any(p.is_meta for p in component.parameters())


def fill_size(
    own: tuple[Any, Any, Any], frames: int | None, height: int | None, width: int | None
) -> tuple[int, int, int]:
    """The frames, height and width given, the model's ``own`` for those left unset."""
    return tuple(o if given is None else given for o, given in zip(own, (frames, height, width), strict=True))


class DiffusersT2VSpec:
    """What diffusers T2V pipelines share: loading, frame/size checks, batched sampling with one
    generator per video, prompt and VAE encoding. A family sets ``pipeline_class`` and the rest."""

    family = ""
    name = ""  # for messages
    pipeline_class = ""  # diffusers class name, as in model_index.json's _class_name
    default_max_sequence_length = 226
    # frames, height, width when unset: a family's fixed recommendation (None: read from the model's configs)
    default_size: tuple[int, int, int] | None = None
    # What `generate` / `eval` use when --guidance / --fps are not given (the family's own recommendation).
    default_guidance = 6.0
    default_fps = 8
    fp32_components: tuple[str, ...] = ()  # loaded in fp32 whatever the run's dtype

    def gpu_dtype(self, model: str) -> str | None:
        """What ``dtype: auto`` loads ``model`` in on a GPU where its makers recommend a dtype other than
        ``auto_dtype``'s (read from its configs, before loading); None: ``auto_dtype``'s."""
        return None

    def fps(self, pipe: Any) -> int:
        """The frame rate the model's clips play at (what `generate` writes when --fps is not given)."""
        return self.default_fps

    def guidances(self, pipe: Any) -> tuple[float, float | None]:
        """The guidance scale, and a two-expert pipeline's low-noise one (None: none of its own), that
        `generate`, `eval` and align's validation samples use when not given."""
        return self.default_guidance, None

    def component_dtypes(self, dtype: Any) -> Any:
        """What ``from_pretrained(dtype=...)`` gets: one dtype, or per component (diffusers' dict with a
        "default"; the trainer asks for an fp32 transformer so), with ``fp32_components`` kept fp32."""
        dtypes = dtype if isinstance(dtype, dict) else {"default": dtype}
        dtypes = {name: resolve_dtype(d) for name, d in dtypes.items()}
        for name in self.fp32_components:
            dtypes.setdefault(name, torch.float32)
        return dtypes if len(set(dtypes.values())) > 1 else dtypes["default"]

    def pipeline_type(self) -> Any:
        import diffusers

        return getattr(diffusers, self.pipeline_class)

    # ---- loading -------------------------------------------------------------------------------
    def load(
        self,
        model: str,
        *,
        dtype: Any = "float32",
        device: Any = "cpu",
        lora: str | None = None,
        without: tuple[str, ...] = (),
    ):
        """``without``: components whose weights are not read (a frozen expert nothing samples with); each is
        its ``empty_component``, so the pipeline's config and components still describe the whole model."""
        local = Path(model)
        if local.exists() and not (local / "model_index.json").exists():
            raise not_a_pipeline(model)
        try:
            skipped = dict.fromkeys(without)  # diffusers reads no weights for a component passed as None
            pipe = self.pipeline_type().from_pretrained(model, dtype=self.component_dtypes(dtype), **skipped)
        except (OSError, ValueError) as exc:  # ValueError: huggingface_hub's invalid repo id (a bad path)
            from videolift.core.hub import hub_failure

            raise VideoliftError(
                f"cannot load {self.pipeline_class} {model!r}: not a local pipeline directory and not "
                f"reachable on the Hub ({hub_failure(model, exc)})"
            ) from None
        if lora:
            check_lora_dir(lora)
            into = lora_component(lora)
            if into != "transformer" and getattr(pipe, into, None) is None:
                raise VideoliftError(
                    f"{lora}: a LoRA of the {into} of a two-expert pipeline; {model} has none"
                )
            try:
                pipe.load_lora_weights(
                    lora, **({"load_into_transformer_2": True} if into == "transformer_2" else {})
                )
            except (OSError, ValueError, RuntimeError) as exc:  # e.g. a LoRA trained for another model
                raise VideoliftError(
                    f"{lora}: cannot load this LoRA onto {model} ({str(exc).splitlines()[0]})"
                ) from None
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe if device is None else pipe.to(device)
        pipe.register_modules(**{name: empty_component(model, name) for name in without})  # after .to()
        return pipe

    # ---- sampling ------------------------------------------------------------------------------
    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        return fill_size(self.default_size or (None, None, None), frames, height, width)

    def own_sampling(
        self, model: str, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int] | None:
        """``default_sampling`` read from a local pipeline's configs, before (and without) loading its
        weights; None where this family cannot tell so (the size is known once the model loads)."""
        return self.default_sampling(None, frames, height, width) if self.default_size else None

    def compression(self, pipe: Any) -> tuple[int, int]:
        """The VAE's (temporal, spatial) compression, under the pipeline's names for them."""
        return int(pipe.vae_scale_factor_temporal), int(pipe.vae_scale_factor_spatial)

    def spatial_patch(self, pipe: Any) -> int:
        return int(pipe.transformer.config.patch_size)

    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        self.check_guidance_2(pipe.config, settings.guidance_2)
        tcr, scale = self.compression(pipe)
        if settings.frames < 1 or (settings.frames - 1) % tcr:
            raise VideoliftError(
                f"--frames {settings.frames}: {self.name} needs frames = {tcr}k+1 "
                f"(e.g. {tcr * 2 + 1}, {tcr * 3 + 1}, {tcr * 12 + 1})"
            )
        patch = self.spatial_patch(pipe)
        multiple = scale * patch
        for name, value in (("height", settings.height), ("width", settings.width)):
            if value <= 0 or value % multiple:
                raise VideoliftError(
                    f"--{name} {value}: must be a positive multiple of {multiple} "
                    f"(VAE scale {scale} x patch {patch})"
                )
        if settings.steps < 1:
            raise VideoliftError(f"--steps {settings.steps}: must be at least 1")

    def two_experts(self, config: Any) -> bool:
        """Whether a pipeline's config (or model_index.json) has two experts (Wan 2.2 A14B)."""
        return False

    def check_guidance_2(self, config: Any, guidance_2: float | None, option: str = "--guidance") -> None:
        """Refuse ``--guidance-2`` for a pipeline (its config or model_index.json) without two experts
        (``option``: the guidance's option, ``option-2`` the refused one's: align's --validation-guidance)."""
        if guidance_2 is not None and not self.two_experts(config):
            raise VideoliftError(
                f"{option}-2 {guidance_2}: the low-noise expert's guidance, only for two-expert Wan 2.2 (A14B); "
                f"this {self.pipeline_class or 'pipeline'} has one transformer: leave it out ({option} guides it)"
            )

    def check_trainable(self, pipe: Any) -> None:
        return None

    def trained_component(self, config: Any, expert: str | None) -> str:
        """The pipeline component an alignment run trains, from the pipeline's config (or model_index.json)
        and ``--expert``: the one transformer, or the expert named where there are two."""
        if expert is not None:
            raise OptionError(
                f"--expert {expert}: only for pipelines with two experts (Wan 2.2 A14B); this "
                f"{self.pipeline_class or 'pipeline'} has one transformer, trained whole: leave --expert out"
            )
        return "transformer"

    def frozen_experts(self, expert: str | None) -> tuple[str, ...]:
        """The pipeline components a run training ``expert`` leaves frozen and needs only to sample with:
        none for one transformer."""
        return ()

    def timestep_range(self, pipe: Any, expert: str | None) -> tuple[int, int]:
        """The integer timesteps [low, high) the trained component is trained at: all for one transformer."""
        return 0, int(pipe.scheduler.config.num_train_timesteps)

    def max_sequence_length(self, pipe: Any, settings: SamplerSettings | None = None) -> int:
        if settings is not None and settings.max_sequence_length:
            return settings.max_sequence_length
        return self.default_max_sequence_length

    def sampling_kwargs(self, settings: SamplerSettings) -> dict[str, Any]:
        """Family-specific pipeline arguments beyond the shared ones."""
        return {}

    @torch.no_grad()
    def generate(
        self, pipe: Any, prompts: list[str], seeds: list[int], settings: SamplerSettings
    ) -> list[np.ndarray]:
        # The pipeline makes one video per prompt: repeat prompts and pass one generator per sample.
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        out = pipe(
            prompt=list(prompts),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            num_frames=settings.frames,
            height=settings.height,
            width=settings.width,
            generator=generators,
            output_type="np",
            max_sequence_length=self.max_sequence_length(pipe, settings),
            **({"negative_prompt": settings.negative_prompt} if settings.negative_prompt is not None else {}),
            **self.sampling_kwargs(settings),
        ).frames
        videos = [np.clip(np.asarray(v) * 255.0 + 0.5, 0, 255).astype(np.uint8) for v in out]
        want = (settings.height, settings.width)
        if None not in want and videos and videos[0].shape[1:3] != want:  # before a wrong size is written
            got = videos[0].shape[1:3]
            raise VideoliftError(
                f"the pipeline made {got[0]}x{got[1]} frames, not {want[0]}x{want[1]}{_tiling_hint(pipe.vae)}"
            )
        return videos

    # ---- encoding (cached once by the trainer) --------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        encoded = pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length(pipe),
            device=pipe.text_encoder.device,
            dtype=pipe.text_encoder.dtype,
        )
        return self.prompt_embeds(encoded).detach()

    def prompt_embeds(self, encoded: tuple) -> torch.Tensor:
        """The (B, L, D) conditioning out of what ``pipe.encode_prompt`` returned (embeddings first)."""
        return encoded[0]

    @torch.no_grad()
    def encode_videos(self, pipe: Any, videos: list[np.ndarray]) -> torch.Tensor:
        """Latent distribution parameters (B, 2C, F, h, w) (mean and log-variance), for caching."""
        vae = pipe.vae
        x = torch.from_numpy(np.stack(videos)).to(vae.device, vae.dtype)  # B T H W C
        x = x.permute(0, 4, 1, 2, 3) / 127.5 - 1.0  # B C T H W in [-1, 1]
        params = vae.encode(x).latent_dist.parameters.detach()
        scale = self.compression(pipe)[1]
        want, got = (x.shape[3] // scale, x.shape[4] // scale), tuple(params.shape[3:])
        if got != want:  # found here, before such latents are cached and fail the first training step
            raise VideoliftError(
                f"the VAE encoded {x.shape[3]}x{x.shape[4]} frames to {got[0]}x{got[1]} latents, not "
                f"{want[0]}x{want[1]}{_tiling_hint(vae)}"
            )
        return params

    @staticmethod
    def draw(parameters: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A sample of the VAE posterior from its cached (mean, log-variance), (B, C, F, h, w)."""
        mean, logvar = parameters.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * eps
