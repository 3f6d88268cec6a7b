"""Attention pictures: one panel per head, source tokens on the x axis, target tokens on the y
axis (judge side; matplotlib without pyplot, so no global backend or rcParams is touched).

Japanese needs a font with Japanese glyphs. ``find_cjk_font`` picks, in this order: the font
file named by ``TRANSFORMER_CJK_FONT``; IPAexGothic, shipped by the ``matplotlib-fontja``
package (requirements.txt), so a fresh machine without any CJK system font still draws
Japanese; a CJK font matplotlib already knows; one fontconfig knows (``fc-list :lang=ja``).
Without any, the picture is still drawn — the Japanese labels come out as empty boxes — and a
warning says what to install.
"""

from __future__ import annotations

import functools
import os
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

CJK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Noto Serif CJK JP",
    "Source Han Sans JP",
    "Source Han Sans",
    "IPAexGothic",
    "IPAGothic",
    "IPAPGothic",
    "IPAexMincho",
    "IPAMincho",
    "TakaoGothic",
    "TakaoPGothic",
    "VL Gothic",
    "Hiragino Sans",
    "Hiragino Kaku Gothic ProN",
    "Hiragino Kaku Gothic Pro",
    "Yu Gothic",
    "Meiryo",
    "MS Gothic",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Droid Sans Fallback",
    "WenQuanYi Zen Hei",
    "Arial Unicode MS",
)
FONT_ENV = "TRANSFORMER_CJK_FONT"  # a font file to use instead of searching


class NoCJKFontWarning(UserWarning):
    """No font that can draw Japanese was found; labels will show as boxes."""


def bundled_font_file() -> str | None:
    """The IPAexGothic file shipped by ``matplotlib-fontja`` (None when it is not installed).

    Importing ``matplotlib_fontja`` sets matplotlib's global font family; that change is
    undone here (``rc_context``): the judge only registers the file and names the font
    where it draws."""
    import matplotlib

    try:
        with matplotlib.rc_context():
            from matplotlib_fontja import get_font_ttf_path
        path = get_font_ttf_path()
    except Exception:  # not installed, or a version without that function
        return None
    return path if Path(path).is_file() else None


def register_font(path: str | os.PathLike) -> str | None:
    """Add a font file to matplotlib's font manager (once); its family name, or None when the
    file cannot be read."""
    from matplotlib import font_manager

    try:
        path = str(Path(path).resolve())
        if not any(Path(entry.fname).resolve() == Path(path) for entry in font_manager.fontManager.ttflist):
            font_manager.fontManager.addfont(path)
        return font_manager.FontProperties(fname=path).get_name()
    except Exception:  # unreadable file, unsupported format
        return None


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """The family name of a font that has Japanese glyphs (registered with matplotlib), or None."""
    from matplotlib import font_manager

    for path in (os.environ.get(FONT_ENV), bundled_font_file()):
        if path and Path(path).is_file():
            name = register_font(path)
            if name:
                return name
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    # Fonts installed after matplotlib built its font cache are not in ttflist: ask fontconfig.
    try:
        listing = subprocess.run(["fc-list", ":lang=ja", "file"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    paths = sorted(
        {line.split(":")[0].strip() for line in listing.splitlines() if line.strip()},
        key=lambda p: (not any(k in p.lower() for k in ("gothic", "sans")), p),
    )
    for path in paths:
        if path.lower().endswith((".ttf", ".otf", ".ttc")):
            name = register_font(path)
            if name:
                return name
    return None


def _font_or_warn() -> str | None:
    font = find_cjk_font()
    if font is None:
        warnings.warn(
            "no CJK-capable font found: the Japanese tokens in the attention picture will show as "
            "boxes. Install one (pip install -r requirements.txt brings matplotlib-fontja; or "
            "Debian/Ubuntu: apt-get install fonts-noto-cjk, or fonts-ipafont-gothic; "
            f"or set {FONT_ENV}=/path/to/font.ttf) and draw it again.",
            NoCJKFontWarning,
            stacklevel=3,
        )
    return font


def _heatmaps(fig, row_axes, maps, x_labels, y_labels, row_title, font):
    fontdict = {"family": [font, "DejaVu Sans"]} if font else {}  # DejaVu Sans: what the CJK font lacks
    image = None
    for head, (ax, weights) in enumerate(zip(row_axes, maps)):
        image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(x_labels)))
        ax.set_xticklabels(x_labels, rotation=90, fontdict=fontdict, fontsize=9)
        ax.set_yticks(range(len(y_labels)))
        ax.set_yticklabels(y_labels if head == 0 else [""] * len(y_labels), fontdict=fontdict, fontsize=9)
        ax.set_title(f"head {head + 1}", fontsize=9)
        if head == 0:
            ax.set_ylabel(row_title, fontsize=9)
    return image


def attention_figure(
    source: Sequence[str],
    target: Sequence[str],
    cross: Sequence,
    encoder: Sequence | None = None,
    title: str | None = None,
):
    """The picture of ``plot_attention`` as a matplotlib ``Figure`` (with an Agg canvas), not
    yet drawn; ``figure.cjk_font`` is the font family its labels use (None: no CJK font)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cross = np.asarray(cross, dtype=float)
    if cross.ndim == 2:
        cross = cross[None]
    heads = cross.shape[0]
    t_tgt, t_src = cross.shape[1], cross.shape[2]
    source, target = list(source)[:t_src], list(target)[:t_tgt]
    source += [""] * (t_src - len(source))
    target += [""] * (t_tgt - len(target))
    rows = [("cross-attention, last decoder layer\n(rows: output tokens, columns: source)", cross, source, target)]
    if encoder is not None:
        encoder = np.asarray(encoder, dtype=float)
        if encoder.ndim == 2:
            encoder = encoder[None]
        rows.append(("encoder self-attention, last layer\n(rows: queries, columns: keys)", encoder, source, source))
    font = _font_or_warn()

    cell = 0.34
    width = max(6.0, heads * (cell * t_src + 0.6) + 2.6)
    height = sum(cell * len(y) + 1.6 for _, _, _, y in rows) + (0.8 if title else 0.3)
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(rows), heads, squeeze=False, gridspec_kw={"height_ratios": [max(len(y), 2) for _, _, _, y in rows]}
    )
    image = None
    for (row_title, maps, x_labels, y_labels), row_axes in zip(rows, axes):
        image = _heatmaps(fig, row_axes, maps, x_labels, y_labels, row_title, font)
    if title:
        fig.suptitle(title, fontsize=11, fontfamily=[font, "DejaVu Sans"] if font else None)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    fig.cjk_font = font
    return fig


def plot_attention(
    path: str | os.PathLike,
    source: Sequence[str],
    target: Sequence[str],
    cross: Sequence,
    encoder: Sequence | None = None,
    title: str | None = None,
) -> Path:
    """Draw the cross-attention of the last decoder layer (``cross``: ``(h, T_tgt, T_src)``,
    rows = target tokens, columns = source tokens) and, when given, the encoder
    self-attention (``encoder``: ``(h, T_src, T_src)``) into a PNG at ``path``.

    Never fails for want of a font: without a CJK font it warns (``NoCJKFontWarning``, once
    rather than once per missing glyph) and draws anyway."""
    fig = attention_figure(source, target, cross, encoder, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        if fig.cjk_font is None:  # already said once, as a NoCJKFontWarning
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from (current )?font", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*tight_layout.*")
        fig.savefig(path, bbox_inches="tight")
    return path


def plot_attention_dict(path: str | os.PathLike, attention: dict, title: str | None = None) -> Path | None:
    """``plot_attention`` from the plain dict of ``decode.attention_maps`` / ``job.run``;
    None when the dict holds no cross-attention (a model that keeps no ``attn_weights``)."""
    if not attention or attention.get("cross") is None:
        return None
    if title is None:
        src = " ".join(t for t in attention["source"] if t != "</s>")
        tgt = " ".join(t for t in attention["target"] if t != "</s>")
        title = f"{src}  →  {tgt}"
    return plot_attention(
        path, attention["source"], attention["target"], attention["cross"], attention.get("encoder"), title
    )
