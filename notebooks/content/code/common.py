# en: Helpers shared by every notebook (appended to the setup cell by builders/notebooks.py).
# ja: すべてのノートブックで共通の補助関数です（builders/notebooks.py がセットアップのセルに付け加えます）。
import os
from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import font_manager

torch.manual_seed(0)

CJK_FAMILIES = [
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "IPAexGothic",
    "IPAGothic",
    "IPAPGothic",
    "TakaoGothic",
    "VL Gothic",
    "Source Han Sans JP",
    "Hiragino Sans",
    "Hiragino Kaku Gothic ProN",
    "Yu Gothic",
    "Meiryo",
    "MS Gothic",
]


# en: Japanese labels need a font with Japanese glyphs. In this order: the font file named by
# en: the environment variable TRANSFORMER_CJK_FONT; IPAexGothic, shipped by the matplotlib-fontja
# en: package (requirements.txt); a CJK font installed on this machine. Returns its name, or None
# en: (matplotlib then warns that glyphs are missing, and Japanese shows as boxes).
# ja: 日本語のラベルには、日本語の字形を持つフォントが必要です。次の順に探します：環境変数
# ja: TRANSFORMER_CJK_FONT が指すフォントファイル、matplotlib-fontja パッケージ（requirements.txt）に
# ja: 同梱の IPAexGothic、このマシンにインストールされている CJK フォント。見つかったフォント名を返し、
# ja: なければ None を返します（そのときは matplotlib が字形がないと警告し、日本語は四角で表示されます）。
def _use_cjk_font():
    files = [os.environ.get("TRANSFORMER_CJK_FONT")]
    try:
        # en: importing it changes rcParams; we set them ourselves below
        # ja: import すると rcParams が変わるので、元に戻して下で自分で設定します
        with matplotlib.rc_context():
            from matplotlib_fontja import get_font_ttf_path
        files.append(get_font_ttf_path())
    except ImportError:
        pass
    name = None
    for path in files:
        if path and os.path.isfile(path):
            try:
                if path not in {font.fname for font in font_manager.fontManager.ttflist}:
                    font_manager.fontManager.addfont(path)
                name = font_manager.FontProperties(fname=path).get_name()
                break
            except (OSError, RuntimeError, ValueError):
                continue  # not a font file matplotlib can read  #ja: matplotlib が読めるフォントファイルではありません
    if name is None:
        installed = {font.name for font in font_manager.fontManager.ttflist}
        name = next((family for family in CJK_FAMILIES if family in installed), None)
    if name is not None:
        # en: DejaVu Sans draws what the CJK font lacks (e.g. W₁): matplotlib falls back along font.family
        # ja: CJK フォントにない文字（W₁ など）は DejaVu Sans で描きます
        # ja: （matplotlib は font.family の順に代わりを探します）
        matplotlib.rcParams["font.family"] = [name, "DejaVu Sans"]
    return name


CJK_FONT = _use_cjk_font()


# en: The label in this notebook's language.
# ja: このノートブックの言語でのラベル。
def tr(en, ja):
    return ja if LANG == "ja" else en


# en: Runs a picture cell; code that is not written yet gives a note instead of a traceback.
# ja: 図のセルを実行します。まだ書いていないコードがあれば、トレースバックの代わりにお知らせを表示します。
@contextmanager
def student_code():
    try:
        yield
    except NotImplementedError as error:
        if STRICT:
            raise
        print(tr("Not implemented yet — ", "まだ実装されていません — ") + str(error))
        print(
            tr(
                "Implement it in transformer/, then run this cell again.",
                "transformer/ に実装してから、このセルをもう一度実行してください。",
            )
        )


# en: Draws a matrix (tensor or array), with tick labels and the numbers in the cells if asked.
# ja: 行列（テンソルまたは配列）を描きます。指定があれば目盛りのラベルと各マスの数値も描きます。
def heatmap(
    ax,
    matrix,
    xlabels=None,
    ylabels=None,
    title="",
    cmap="viridis",
    annotate=False,
    xlabel="",
    ylabel="",
    vmin=None,
    vmax=None,
    colorbar=False,
):
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
            ax.text(
                j,
                i,
                "0" if abs(value) < 5e-3 else f"{value:.2g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        plt.colorbar(image, ax=ax, fraction=0.046)
    return image


# en: A toy vocabulary for the example sentences. Every word has a fixed random vector, so
# en: "embeddings" are available before the embedding part is written.
# ja: 例文のための小さな語彙です。どの単語にも固定のランダムなベクトルがあるので、
# ja: 埋め込みのパートを書く前から「埋め込み」が使えます。
VOCAB = [
    "<pad>",
    "<s>",
    "</s>",
    "吾輩",
    "は",
    "猫",
    "で",
    "ある",
    "名前",
    "まだ",
    "無い",
    "犬",
    "I",
    "am",
    "a",
    "cat",
    "the",
    "sat",
    "on",
    "mat",
    "dog",
    "name",
    "no",
    "yet",
    "have",
    ".",
]
PAD, BOS, EOS = 0, 1, 2


# en: Token ids of a list of words of VOCAB, as a (1, T) long tensor.
# ja: VOCAB の単語のリストのトークン ID（形状 (1, T) の long テンソル）。
def ids(words):
    return torch.tensor([[VOCAB.index(w) for w in words]])


# en: (T, d_model): a fixed random vector per word (the same word, the same vector).
# ja: (T, d_model)：単語ごとに固定のランダムなベクトル（同じ単語には常に同じベクトル）。
def word_vectors(words, d_model=16, seed=0):
    table = torch.randn(len(VOCAB), d_model, generator=torch.Generator().manual_seed(seed))
    return table[[VOCAB.index(w) for w in words]]
