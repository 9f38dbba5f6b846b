"""Cell diagrams (PNG and SVG) in the style of the DARTS paper's figures, and plots that compare
runs.

With graphviz's ``dot`` on the PATH the cells are laid out by its layered layout (the field's
usual tool, as DARTS's ``visualize.py``); otherwise matplotlib draws them: nodes in ranks from
left to right, edges as arcs, each operation label placed at the first point along its arc where
it overlaps no other label or node (text extents measured by the renderer), the axes sized to
hold every label. Files are written atomically and carry no timestamp, so the same genotype
always gives the same files.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

OP_COLORS = {"skip_connect": "#4c72b0", "none": "#aaaaaa", "avg_pool_3x3": "#55a868",
             "max_pool_3x3": "#8172b2", "nor_conv_1x1": "#dd8452", "nor_conv_3x3": "#c44e52",
             "sep_conv_3x3": "#c44e52", "sep_conv_5x5": "#dd8452", "sep_conv_7x7": "#937860",
             "dil_conv_3x3": "#da8bc3", "dil_conv_5x5": "#8c8c8c", "conv_7x1_1x7": "#ccb974"}
INPUT, INNER, OUTPUT = "#9ecae1", "#fdd0a2", "#c7e9c0"


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ---- the graph of a genotype ------------------------------------------------------------------
def cell_graphs(genotype) -> list[tuple[str, list, list]]:
    """Per cell: (title, nodes [(name, label, kind, x, y)], edges [(src, dst, op)]); x is the
    node's rank from left to right, y its height."""
    from ..spaces import DartsGenotype, NB201Genotype, ToyGenotype
    out = []
    if isinstance(genotype, DartsGenotype):
        for cell in ("normal", "reduce"):
            inputs = genotype.nodes(cell)
            steps = len(inputs)
            nodes = [("ck2", "c_{k-2}", "input", 0, 1.1), ("ck1", "c_{k-1}", "input", 0, -1.1)]
            nodes += [(f"n{i}", str(i), "inner", 1 + i,
                       1.3 - 2.6 * i / max(steps - 1, 1)) for i in range(steps)]
            nodes.append(("ck", "c_{k}", "output", 1 + steps, 0.0))
            names = ["ck2", "ck1"] + [f"n{i}" for i in range(steps)]
            edges = [(names[j], f"n{i}", op) for i, ins in enumerate(inputs) for op, j in ins]
            edges += [(names[c], "ck", "") for c in getattr(genotype, cell + "_concat")]
            out.append((f"{cell} cell", nodes, edges))
    elif isinstance(genotype, NB201Genotype):
        nodes = [("n0", "0", "input", 0, 0.0), ("n1", "1", "inner", 1, 1.0),
                 ("n2", "2", "inner", 2, -1.0), ("n3", "3", "output", 3, 0.0)]
        edges, e = [], 0
        for i in range(1, 4):
            for j in range(i):
                op = genotype.ops[e]
                e += 1
                if op != "none":
                    edges.append((f"n{j}", f"n{i}", op))
        out.append(("NAS-Bench-201 cell (none edges omitted)", nodes, edges))
    elif isinstance(genotype, ToyGenotype):
        n = len(genotype.choices)
        nodes = [("in", "input", "input", 0, 0.0)]
        nodes += [(f"n{i}", str(i + 1), "inner", 1, 0.55 * ((n - 1) / 2 - i)) for i in range(n)]
        nodes.append(("out", "output", "output", 2, 0.0))
        edges = [("in", f"n{i}", f"conv_{c}") for i, c in enumerate(genotype.choices)]
        edges += [(f"n{i}", "out", "") for i in range(n)]
        out.append(("toy teacher-student DAG", nodes, edges))
    elif hasattr(genotype, "cell_graph"):  # spaces that describe their own cells
        out.extend(genotype.cell_graph())
    else:
        raise TypeError(f"cannot draw {type(genotype).__name__}")
    return out


# ---- graphviz ---------------------------------------------------------------------------------
def _dot_source(title: str, nodes, edges) -> str:
    color = {"input": INPUT, "inner": INNER, "output": OUTPUT}
    lines = ["digraph cell {", "  rankdir=LR; splines=true; nodesep=0.35; ranksep=0.6;",
             f'  label="{title}"; labelloc=t; fontname="Helvetica";',
             '  node [style="rounded,filled", shape=box, fontname="Helvetica", penwidth=1.2];',
             '  edge [fontname="Helvetica", fontsize=11];']
    for name, label, kind, _, _ in nodes:
        text = label.replace("_{", "_").replace("}", "")
        lines.append(f'  {name} [label="{text}", fillcolor="{color[kind]}"];')
    for src, dst, op in edges:
        if op:
            c = OP_COLORS.get(op, "#555555")
            lines.append(f'  {src} -> {dst} [label="{op}", color="{c}", fontcolor="{c}"];')
        else:
            lines.append(f'  {src} -> {dst} [style=dashed, color="#999999"];')
    lines.append("}")
    return "\n".join(lines)


def _draw_graphviz(genotype, path: Path) -> bool:
    dot = shutil.which("dot")
    if dot is None:
        return False
    from ..runs.rundir import atomic_write_bytes
    graphs = cell_graphs(genotype)
    for suffix in ("png", "svg"):
        parts = []
        for title, nodes, edges in graphs:
            r = subprocess.run([dot, f"-T{suffix}"] + (["-Gdpi=130"] if suffix == "png" else []),
                               input=_dot_source(title, nodes, edges).encode(),
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                return False
            parts.append(r.stdout)
        if len(parts) == 1:
            data = parts[0]
        else:  # one file per cell, side by side: compose with matplotlib from the PNGs
            return False
        atomic_write_bytes(path.with_suffix("." + suffix), data)
    return True


# ---- matplotlib -------------------------------------------------------------------------------
def _bezier(p0, c, p1, t):
    return ((1 - t) ** 2 * p0[0] + 2 * t * (1 - t) * c[0] + t ** 2 * p1[0],
            (1 - t) ** 2 * p0[1] + 2 * t * (1 - t) * c[1] + t ** 2 * p1[1])


def _overlaps(a, b, pad=0.02):
    return not (a[2] + pad < b[0] or b[2] + pad < a[0] or a[3] + pad < b[1] or
                b[3] + pad < a[1])


def _draw_cell(ax, title: str, nodes, edges):
    from matplotlib.patches import FancyArrowPatch
    X = 2.2  # data units between ranks
    pos = {n[0]: (X * n[3], n[4]) for n in nodes}
    ranks = max(n[3] for n in nodes) + 1
    color = {"input": INPUT, "inner": INNER, "output": OUTPUT}
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ax.set_xlim(-1.5, X * (ranks - 1) + 1.5)
    ys = [p[1] for p in pos.values()]
    ax.set_ylim(min(ys) - 1.6, max(ys) + 1.6)
    boxes = []
    node_artists = {}
    for name, label, kind, _, _ in nodes:
        x, y = pos[name]
        t = ax.text(x, y, f"${label}$" if "_" in label else label, ha="center", va="center",
                    fontsize=11, zorder=3, bbox=dict(boxstyle="round,pad=0.4",
                                                     fc=color[kind], ec="#333333"))
        node_artists[name] = t
    fig.canvas.draw()
    inv = ax.transData.inverted()

    def bbox_data(artist):
        bb = artist.get_window_extent(renderer)
        (x0, y0), (x1, y1) = inv.transform([(bb.x0, bb.y0), (bb.x1, bb.y1)])
        return (x0, y0, x1, y1)

    for t in node_artists.values():
        boxes.append(bbox_data(t))
    # parallel edges between the same ranks get different curvatures
    seen: dict[tuple, int] = {}
    for src, dst, op in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        key = (min(x0, x1), max(x0, x1))
        k = seen.get(key, 0)
        seen[key] = k + 1
        rad = (0.12 + 0.08 * (k // 2)) * (1 if k % 2 else -1) if (x1 - x0) > 1.5 * X else \
            (0.05 * (1 if k % 2 else -1) if op else 0.0)
        c = OP_COLORS.get(op, "#555555") if op else "#999999"
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=13,
                                     connectionstyle=f"arc3,rad={rad}", shrinkA=20, shrinkB=20,
                                     color=c, lw=1.4, ls="-" if op else "--", zorder=1))
        if not op:
            continue
        dx, dy = x1 - x0, y1 - y0
        ctrl = ((x0 + x1) / 2 + rad * dy, (y0 + y1) / 2 - rad * dx)
        placed = None
        for tt in (0.5, 0.4, 0.6, 0.32, 0.68, 0.25, 0.75, 0.45, 0.55):
            mx, my = _bezier((x0, y0), ctrl, (x1, y1), tt)
            txt = ax.text(mx, my, op, fontsize=8.5, ha="center", va="center", color=c,
                          zorder=2, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none",
                                              alpha=0.9))
            bb = bbox_data(txt)
            if not any(_overlaps(bb, o) for o in boxes):
                placed = bb
                break
            txt.remove()
        if placed is None:  # nowhere free: the middle, on top
            mx, my = _bezier((x0, y0), ctrl, (x1, y1), 0.5)
            txt = ax.text(mx, my, op, fontsize=8.5, ha="center", va="center", color=c, zorder=4,
                          bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=c, alpha=0.95))
            placed = bbox_data(txt)
        boxes.append(placed)
    # axes large enough for every label (none cut at the border)
    xs = [b[0] for b in boxes] + [b[2] for b in boxes]
    ys = [b[1] for b in boxes] + [b[3] for b in boxes]
    ax.set_xlim(min(xs) - 0.3, max(xs) + 0.3)
    ax.set_ylim(min(ys) - 0.4, max(ys) + 0.4)
    ax.set_title(title, fontsize=11)
    ax.axis("off")


def draw(genotype, path: str | Path | None = None, title: str | None = None):
    """Draw a genotype; with ``path`` (without suffix) write ``path.png`` and ``path.svg``
    (graphviz's layout where ``dot`` is installed and the genotype has one cell). Returns the
    matplotlib figure (closed when written), or None when graphviz drew it."""
    graphs = cell_graphs(genotype)
    if path is not None and len(graphs) == 1 and title is None and \
            _draw_graphviz(genotype, Path(path)):
        return None
    plt = _plt()
    widths = [1.6 + 1.55 * (max(n[3] for n in nodes) + 1) for _, nodes, _ in graphs]
    height = max(2.8, 1.6 + 1.15 * max(max(n[4] for n in nodes) - min(n[4] for n in nodes)
                                       for _, nodes, _ in graphs))
    fig, axes = plt.subplots(1, len(graphs), figsize=(sum(widths), height),
                             gridspec_kw={"width_ratios": widths})
    axes = axes if len(graphs) > 1 else [axes]
    for ax, (t, nodes, edges) in zip(axes, graphs):
        _draw_cell(ax, t, nodes, edges)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        save(fig, Path(path))  # (its parent directory made as the files are written)
        plt.close(fig)
    return fig


def epoch_axes(ax) -> None:
    """A per-epoch panel: whole epochs on x, and a y range at least 1% of its level wide, so that
    a flat curve is drawn flat instead of magnified to its eighth digit."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_yscale() != "linear":
        return
    ax.ticklabel_format(axis="y", useOffset=False)
    lo, hi = ax.get_ylim()
    mid, span = (lo + hi) / 2, abs(lo + hi) / 2 * 0.01
    if 0 < hi - lo < span:
        ax.set_ylim(mid - span / 2, mid + span / 2)


def save(fig, path: Path, dpi: int = 130) -> None:
    """``path.png`` and ``path.svg``, atomically and without timestamps (reproducible files)."""
    import io

    from ..runs.rundir import atomic_write_bytes
    for suffix, meta in ((".png", {"Software": None}), (".svg", {"Date": None,
                                                                "Creator": None})):
        import matplotlib
        buf = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "archgrad"}):
            fig.savefig(buf, format=suffix[1:], dpi=dpi, metadata=meta)
        atomic_write_bytes(path.with_suffix(suffix), buf.getvalue())
