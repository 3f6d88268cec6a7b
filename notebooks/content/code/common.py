# Helpers shared by every notebook (appended to the setup cell by grader/notebooks.py).
import warnings
from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import font_manager

torch.manual_seed(0)
warnings.filterwarnings("ignore", message=r"Glyph .* missing from")  # no CJK font: boxes, not noise


def _use_cjk_font():
    """Japanese labels need a CJK font; use the first one installed, else carry on without."""
    wanted = ["Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "IPAPGothic", "TakaoGothic",
              "VL Gothic", "Source Han Sans JP", "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic",
              "Meiryo", "MS Gothic"]
    installed = {font.name for font in font_manager.fontManager.ttflist}
    for name in wanted:
        if name in installed:
            matplotlib.rcParams["font.family"] = "sans-serif"
            matplotlib.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            return name
    return None


CJK_FONT = _use_cjk_font()


def tr(en, ja):
    """The label in this notebook's language."""
    return ja if LANG == "ja" else en


@contextmanager
def student_code():
    """Run a picture cell; code that is not written yet gives a note instead of a traceback."""
    try:
        yield
    except NotImplementedError as error:
        if STRICT:
            raise
        print(tr("Not implemented yet — ", "まだ実装されていません — ") + str(error))
        print(tr("Implement it in transformer/, then run this cell again.",
                 "transformer/ に実装してから、このセルをもう一度実行してください。"))


def heatmap(ax, matrix, xlabels=None, ylabels=None, title="", cmap="viridis", annotate=False,
            xlabel="", ylabel="", vmin=None, vmax=None, colorbar=False):
    """Draw a matrix (tensor or array) with optional tick labels and numbers in the cells."""
    if torch.is_tensor(matrix):
        matrix = matrix.detach().cpu().double().numpy()
    matrix = np.asarray(matrix, dtype=float)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=60 if len(xlabels) > 6 else 0)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels)
    if annotate:
        for (i, j), value in np.ndenumerate(matrix):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(j, i, "0" if abs(value) < 5e-3 else f"{value:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        plt.colorbar(image, ax=ax, fraction=0.046)
    return image


# A toy vocabulary for the example sentences. Every word has a fixed random vector, so
# "embeddings" are available before the embedding part is written.
VOCAB = ["<pad>", "<s>", "</s>", "吾輩", "は", "猫", "で", "ある", "名前", "まだ", "無い", "犬",
         "I", "am", "a", "cat", "the", "sat", "on", "mat", "dog", "name", "no", "yet", "have", "."]
PAD, BOS, EOS = 0, 1, 2


def ids(words):
    """Token ids of a list of words of VOCAB, as a (1, T) long tensor."""
    return torch.tensor([[VOCAB.index(w) for w in words]])


def word_vectors(words, d_model=16, seed=0):
    """(T, d_model): a fixed random vector per word (the same word always gets the same vector)."""
    table = torch.randn(len(VOCAB), d_model, generator=torch.Generator().manual_seed(seed))
    return table[[VOCAB.index(w) for w in words]]
