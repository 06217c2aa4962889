"""A PixelSNAIL-style convolutional autoregressive model over a grid of code indices, the paper's comparison in
Section 4.1 (Chen et al. 2018, "PixelSNAIL"; the gated two-stream causal convolutions of PixelCNN++), written for
experiment 1 of docs/paper.md. Not part of the library.

Raster order over an (h, w) grid. Two streams keep every prediction causal without a blind spot: the *down* stream
sees only rows above (down-shifted convolutions), the *down-right* stream also the positions to the left in the
current row. Each block is a stack of gated residual convolutions (``x + a * sigmoid(b)``, class-conditional through
a learned bias), followed by causal self-attention over the grid whose keys and values also see the embedded input
(a position attends only to positions strictly before it). ``loss`` is the mean NLL in nats per token, as
:class:`common.ClassGPT`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) moved one row down (a zero row on top)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) moved one column right (a zero column on the left)."""
    return F.pad(x, (1, 0, 0, 0))[..., :-1]


class DownConv(nn.Module):
    """Output (i, j) sees rows i-kh+1 .. i and columns j-(kw-1)/2 .. j+(kw-1)/2 of its input."""

    def __init__(self, c_in: int, c_out: int, k: tuple[int, int] = (2, 3)):
        super().__init__()
        self.k = k
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(c_in, c_out, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.k
        return self.conv(F.pad(x, ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)))


class DownRightConv(nn.Module):
    """Output (i, j) sees rows i-kh+1 .. i and columns j-kw+1 .. j of its input."""

    def __init__(self, c_in: int, c_out: int, k: tuple[int, int] = (2, 2)):
        super().__init__()
        self.k = k
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(c_in, c_out, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.k
        return self.conv(F.pad(x, (kw - 1, 0, kh - 1, 0)))


class GatedResidual(nn.Module):
    """``x + a * sigmoid(b)``, (a, b) = conv(elu(conv(elu(x)) [+ 1x1(elu(aux))])) + a class bias."""

    def __init__(self, c: int, conv: type, n_classes: int, aux: bool = False, dropout: float = 0.0):
        super().__init__()
        self.conv_in = conv(c, c)
        self.aux = nn.Conv2d(c, c, 1) if aux else None
        self.conv_out = conv(c, 2 * c)
        self.cond = nn.Embedding(n_classes, 2 * c)
        nn.init.zeros_(self.cond.weight)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv_in(F.elu(x))
        if self.aux is not None:
            h = h + self.aux(F.elu(aux))
        h = self.conv_out(self.drop(F.elu(h))) + self.cond(y)[:, :, None, None]  # (B, 2C, H, W)
        a, b = h.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class CausalAttention(nn.Module):
    """Multi-head attention over the grid in raster order: queries from the features, keys and values from the
    features and the embedded input; position p attends to positions < p only (the first to none)."""

    def __init__(self, c: int, c_in: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Conv2d(c, c, 1)
        self.kv = nn.Conv2d(c + c_in, 2 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = h.shape
        T, nh = H * W, self.heads
        q = self.q(h).view(B, nh, C // nh, T).transpose(2, 3)  # (B, nh, T, d)
        k, v = self.kv(torch.cat((h, x), dim=1)).view(B, 2, nh, C // nh, T).transpose(3, 4).unbind(1)  # (B, nh, T, d)
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril(-1)  # (T, T): key before query
        att = (q @ k.transpose(-1, -2)) * (C // nh) ** -0.5
        att = att.masked_fill(~mask, -1e9).softmax(-1) * mask  # the first row: no key, output 0
        o = (att @ v).transpose(2, 3).reshape(B, C, H, W)
        return self.out(o)


class PixelSNAIL(nn.Module):
    """Class-conditional PixelSNAIL over ``grid`` (h, w) of ``n_codes`` codes: ``n_blocks`` blocks of ``n_res``
    gated residual layers per stream, each block ending in causal attention on the down-right stream."""

    def __init__(self, n_codes: int, n_classes: int, grid: tuple[int, int], channels: int = 128, n_blocks: int = 4,
                 n_res: int = 2, heads: int = 4, embed: int = 64, dropout: float = 0.0):
        super().__init__()
        self.n_codes, self.grid, self.n_tokens = n_codes, tuple(grid), grid[0] * grid[1]
        self.embed = nn.Embedding(n_codes, embed)
        c = channels
        self.u_in = DownConv(embed, c, (2, 3))
        self.ul_in_down = DownConv(embed, c, (1, 3))
        self.ul_in_right = DownRightConv(embed, c, (2, 1))
        self.u_blocks = nn.ModuleList(nn.ModuleList(GatedResidual(c, DownConv, n_classes, dropout=dropout)
                                                    for _ in range(n_res)) for _ in range(n_blocks))
        self.ul_blocks = nn.ModuleList(nn.ModuleList(GatedResidual(c, DownRightConv, n_classes, aux=True,
                                                                   dropout=dropout)
                                                     for _ in range(n_res)) for _ in range(n_blocks))
        self.attn = nn.ModuleList(CausalAttention(c, embed, heads) for _ in range(n_blocks))
        self.attn_gate = nn.ModuleList(GatedResidual(c, lambda i, o: nn.Conv2d(i, o, 1), n_classes, aux=True)
                                       for _ in range(n_blocks))
        self.head = nn.Conv2d(c, n_codes, 1)

    def logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_codes, h, w) for codes ``z`` (B, h*w): position p's logits depend on z[:, :p] only."""
        B = z.shape[0]
        x = self.embed(z.view(B, *self.grid)).permute(0, 3, 1, 2)  # (B, E, h, w)
        u = shift_down(self.u_in(x))
        ul = shift_down(self.ul_in_down(x)) + shift_right(self.ul_in_right(x))
        for ub, ulb, attn, gate in zip(self.u_blocks, self.ul_blocks, self.attn, self.attn_gate):
            for ru, rul in zip(ub, ulb):
                u = ru(u, y)
                ul = rul(ul, y, aux=u)
            ul = gate(ul, y, aux=attn(ul, x))
        return self.head(F.elu(ul))

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(z, y).float(), z.view(-1, *self.grid))

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
               top_k: int | None = None) -> torch.Tensor:
        """Codes (B, h*w), one position at a time (a full forward per token: no cache)."""
        self.eval()
        B = y.shape[0]
        z = torch.zeros(B, self.n_tokens, dtype=torch.long)
        for p in range(self.n_tokens):
            logits = self.logits(z, y).flatten(2)[:, :, p].float() / temperature  # (B, n_codes)
            if top_k:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -float("inf"))
            z[:, p] = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
        return z


def matched(n_codes: int, n_classes: int, grid: tuple[int, int], target: int, **kw) -> tuple[PixelSNAIL, int]:
    """The PixelSNAIL whose parameter count is nearest ``target`` (channels a multiple of 8), and its channels."""
    best = None
    for c in range(8, 513, 8):
        n = sum(p.numel() for p in PixelSNAIL(n_codes, n_classes, grid, channels=c, **kw).parameters())
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (c, n)
        if n > target:
            break
    return PixelSNAIL(n_codes, n_classes, grid, channels=best[0], **kw), best[0]
