"""Cell diagrams (PNG and SVG) in the style of the DARTS paper's figures, drawn with matplotlib
(no graphviz needed), and plots that compare runs."""
from __future__ import annotations

from pathlib import Path

OP_COLORS = {"skip_connect": "#4c72b0", "none": "#aaaaaa", "avg_pool_3x3": "#55a868",
             "max_pool_3x3": "#8172b2", "nor_conv_1x1": "#dd8452", "nor_conv_3x3": "#c44e52",
             "sep_conv_3x3": "#c44e52", "sep_conv_5x5": "#dd8452", "sep_conv_7x7": "#937860",
             "dil_conv_3x3": "#da8bc3", "dil_conv_5x5": "#8c8c8c", "conv_7x1_1x7": "#ccb974"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _draw_dag(ax, nodes: dict, edges: list, title: str):
    """nodes: name -> (x, y, face color); edges: (src, dst, label, rad, dashed)."""
    from matplotlib.patches import FancyArrowPatch
    for src, dst, label, rad, dashed in edges:
        (x0, y0, _), (x1, y1, _) = nodes[src], nodes[dst]
        color = OP_COLORS.get(label, "#555555") if label else "#999999"
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12,
                                     connectionstyle=f"arc3,rad={rad}", shrinkA=16, shrinkB=16,
                                     color=color, lw=1.4, ls="--" if dashed else "-"))
        if label:
            # the label sits 40% along the arc (an arc3 curve bulges by rad/2 at its middle)
            t = 0.4
            dx, dy = x1 - x0, y1 - y0
            bulge = 4 * t * (1 - t) * rad / 2
            mx, my = x0 + t * dx + bulge * dy, y0 + t * dy - bulge * dx
            ax.text(mx, my, label, fontsize=7, ha="center", va="center", color=color,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for name, (x, y, face) in nodes.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.35", fc=face, ec="#333333"))
    xs = [p[0] for p in nodes.values()]
    ys = [p[1] for p in nodes.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def _darts_cell(ax, genotype, cell: str):
    nodes_in = genotype.nodes(cell)
    concat = getattr(genotype, cell + "_concat")
    steps = len(nodes_in)
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(steps)]
    top = 1.3 * (steps - 1) / 2
    nodes = {names[0]: (0.0, top + 0.6, "#9ecae1"), names[1]: (0.0, -top - 0.6, "#9ecae1")}
    for i in range(steps):  # intermediate nodes on a diagonal, like graphviz's ranks
        nodes[names[i + 2]] = (2.4 + 2.0 * i, top - 1.3 * i, "#fdd0a2")
    nodes["c_{k}"] = (2.4 + 2.0 * steps, 0.0, "#c7e9c0")
    edges = []
    for i, inputs in enumerate(nodes_in):
        for n, (op, j) in enumerate(inputs):
            rad = (0.18 if n % 2 else -0.18) if j >= 2 else (0.08 if n % 2 else -0.08)
            edges.append((names[j], names[i + 2], op, rad, False))
    for c in concat:
        edges.append((names[c], "c_{k}", "", 0.0, True))
    _draw_dag(ax, nodes, edges, f"{cell} cell")


def _nb201_cell(ax, genotype):
    pos = {0: (0.0, 0.0), 1: (1.6, 1.2), 2: (3.2, -1.2), 3: (4.8, 0.0)}
    nodes = {f"{i}": (x, y, "#fdd0a2" if 0 < i < 3 else ("#9ecae1" if i == 0 else "#c7e9c0"))
             for i, (x, y) in pos.items()}
    edges, e = [], 0
    for i in range(1, 4):
        for j in range(i):
            op = genotype.ops[e]
            e += 1
            edges.append((f"{j}", f"{i}", op, 0.2 if (i - j) > 1 else 0.0, op == "none"))
    _draw_dag(ax, nodes, edges, "NAS-Bench-201 cell")


def draw(genotype, path: str | Path | None = None, title: str | None = None):
    """Draw a genotype; with ``path`` (without suffix) write ``path.png`` and ``path.svg``.
    Returns the matplotlib figure (closed when written)."""
    plt = _plt()
    from .spaces import DartsGenotype, NB201Genotype, ToyGenotype
    if isinstance(genotype, DartsGenotype):
        fig, axes = plt.subplots(1, 2, figsize=(15, 4.2))
        _darts_cell(axes[0], genotype, "normal")
        _darts_cell(axes[1], genotype, "reduce")
    elif isinstance(genotype, NB201Genotype):
        fig, ax = plt.subplots(figsize=(7, 3.4))
        _nb201_cell(ax, genotype)
    elif isinstance(genotype, ToyGenotype):
        fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(genotype.choices)))
        nodes = {"input": (0.0, 0.0, "#9ecae1"), "output": (5.0, 0.0, "#c7e9c0")}
        edges = []
        n = len(genotype.choices)
        for i, c in enumerate(genotype.choices):
            y = (n - 1) / 2 - i
            nodes[f"{i + 1}"] = (2.5, y * 0.7, "#fdd0a2")
            edges.append(("input", f"{i + 1}", f"conv_{c}", 0.0, False))
            edges.append((f"{i + 1}", "output", "", 0.0, True))
        _draw_dag(ax, nodes, edges, "toy teacher-student DAG")
    else:
        raise TypeError(f"cannot draw {type(genotype).__name__}")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".png", ".svg"):
            tmp = path.with_name(f".{path.name}{suffix}.tmp")
            fig.savefig(tmp, format=suffix[1:], dpi=130)
            tmp.replace(path.with_suffix(suffix))
        plt.close(fig)
    return fig
