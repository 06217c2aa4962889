"""What a benchmark row is: the work, its sizes, and the contestants that do it (original and vqforge's paths)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .measure import Contestant

ORIGINAL = "original"
EXACT = "vqforge fp32"
FAST = "vqforge fast"


@dataclass(frozen=True)
class Levers:
    """The speed levers a vqforge contestant runs with (each switchable, see bench/levers.py).

    precision: ``auto`` (bf16 autocast where the device runs bf16 natively) or ``fp32``. channels_last: NHWC
    activations for the convolutional model. fused: fused Adam/AdamW. compile: ``torch.compile`` of the model.
    """

    precision: str = "auto"
    channels_last: bool = True
    fused: bool = True
    compile: bool = False

    def label(self) -> str:
        on = [self.precision, "channels_last" if self.channels_last else "", "fused" if self.fused else "",
              "compile" if self.compile else ""]
        return "+".join(p for p in on if p)


FAST_LEVERS = Levers()
EXACT_LEVERS = Levers(precision="fp32", channels_last=False, fused=False)


@dataclass(frozen=True)
class VQGANSpec:
    """A VQGAN's shape (the original's ``ddconfig`` plus codebook) and the batch it runs on."""

    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (8,)
    z_channels: int = 64
    n_embed: int = 1024
    embed_dim: int = 64
    resolution: int = 128
    batch: int = 4

    def ddconfig(self) -> dict:
        """The original's ``ddconfig`` dict for this shape."""
        return dict(ch=self.ch, out_ch=3, ch_mult=list(self.ch_mult), num_res_blocks=self.num_res_blocks,
                    attn_resolutions=list(self.attn_resolutions), dropout=0.0, resamp_with_conv=True,
                    in_channels=3, resolution=self.resolution, z_channels=self.z_channels, double_z=False)

    def label(self) -> str:
        mult = ",".join(map(str, self.ch_mult))
        return (f"ch {self.ch}, ch_mult {mult}, {self.num_res_blocks} res block(s), attn at "
                f"{','.join(map(str, self.attn_resolutions))}, z {self.z_channels}, {self.n_embed} codes")


@dataclass(frozen=True)
class GPTSpec:
    """A minGPT's shape, and the batch / sequence length it runs on."""

    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    vocab: int = 1024
    block: int = 257
    batch: int = 8
    tokens: int = 256
    top_k: int = 100

    def n_params(self) -> int:
        """Parameters of the GPT (embeddings, blocks, head), as the original counts them."""
        C = self.n_embd
        return self.vocab * C * 2 + self.block * C + self.n_layer * (12 * C * C + 13 * C) + 2 * C

    def label(self) -> str:
        n = self.n_params()
        size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
        return f"GPT {self.n_layer}x{self.n_embd} ({size}, vocab {self.vocab}, block {self.block})"


@dataclass
class Row:
    """One line of a results table: ``contestants`` do the same ``work`` on the same weights and inputs.

    unit: ``s/step`` (lower is better) or ``img/s`` / ``tok/s`` (``items`` per run; higher is better).
    target: the issue's target for vqforge fast ÷ original, e.g. ``>= 2x``.
    agreement: max |difference| between the original's and vqforge fp32's outputs on the row's weights and
    inputs (the proof that both do the same work; None without the original).
    """

    id: str
    work: str
    unit: str
    items: int = 1
    target: str = ""
    contestants: list[Contestant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    agreement: float | None = None
