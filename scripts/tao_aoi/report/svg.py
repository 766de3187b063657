"""Inline SVG charts drawn in Python: the report needs no JavaScript, library or font download.

Every text node and attribute value goes through ``markupsafe.escape``; coordinates are written
with a fixed number of decimals (never locale-formatted), so the SVG is valid whatever the labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from markupsafe import Markup, escape

from tao_aoi import fmt

W, H = 820, 300
PAD_L, PAD_R, PAD_T, PAD_B = 64, 170, 24, 48
GOOD, BAD, MUTED, BEST, TARGET, INK = "#2e7d32", "#c62828", "#78909c", "#1b5e20", "#ef6c00", "#263238"
SERIES = ("#90a4ae", "#7e57c2", "#26a69a", "#ffa726", "#5c6bc0", "#8d6e63")


def _e(text: Any) -> str:
    return str(escape(str(text)))


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


def tick_texts(ticks: Sequence[float]) -> list[str]:
    """The fewest decimals that write every tick exactly (0.25 needs two, 10 needs none)."""
    for d in range(0, 12):
        texts = [f"{t:.{d}f}" for t in ticks]
        if all(abs(float(s) - t) <= 1e-9 * max(1.0, abs(t)) for s, t in zip(texts, ticks)):
            return texts
    return [fmt.num(t, 6) for t in ticks]


@dataclass
class _Y:
    lo: float
    hi: float

    def __call__(self, v: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - self.lo) / (self.hi - self.lo))


def _domain(values: Sequence[float], nonnegative: bool = True) -> _Y:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.15 if hi > lo else max(abs(hi) * 0.1, 0.1)
    lo, hi = lo - pad, hi + pad
    if nonnegative and min(values) >= 0:
        lo = max(lo, 0.0)
    return _Y(lo, hi)


def _frame(title: str, y: _Y, unit: str) -> list[str]:
    ticks = nice_ticks(y.lo, y.hi)
    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           f'role="img" aria-label="{_e(title)}" class="chart">', f"<title>{_e(title)}</title>"]
    for t, text in zip(ticks, tick_texts(ticks)):
        yy = _f(y(t))
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy}" y2="{yy}" stroke="#eceff1"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{yy}" text-anchor="end" dominant-baseline="middle" '
                   f'class="tick">{_e(text + unit)}</text>')
    out.append(f'<line x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="{MUTED}"/>')
    out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{H - PAD_B}" y2="{H - PAD_B}" stroke="{MUTED}"/>')
    return out


def _target_line(y: _Y, target: float, label: str) -> list[str]:
    yy = _f(y(target))
    return [f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy}" y2="{yy}" stroke="{TARGET}" stroke-dasharray="6 4" '
            f'stroke-width="1.5"/>',
            f'<text x="{W - PAD_R + 6}" y="{yy}" dominant-baseline="middle" fill="{TARGET}" class="lbl">{_e(label)}</text>']


def trajectory(points: Sequence[dict[str, Any]], *, target: float | None, target_label: str, unit: str,
               minimize: bool, title: str) -> Markup:
    """Metric per evaluated phase: segments green when they improve, red otherwise; best point ringed.

    points: {label, value, text (formatted value), best (bool)} in run order.
    """
    values = [p["value"] for p in points]
    y = _domain(values + ([target] if fmt.is_number(target) else []))
    out = _frame(title, y, unit)
    if fmt.is_number(target):
        out += _target_line(y, target, target_label)
    n = len(points)
    step = (W - PAD_L - PAD_R) / max(n, 1)
    xs = [PAD_L + step * (i + 0.5) for i in range(n)]
    for i in range(1, n):
        a, b = values[i - 1], values[i]
        better = b < a if minimize else b > a
        out.append(f'<line x1="{_f(xs[i - 1])}" y1="{_f(y(a))}" x2="{_f(xs[i])}" y2="{_f(y(b))}" '
                   f'stroke="{GOOD if better else BAD}" stroke-width="2.5"/>')
    for x, p in zip(xs, points):
        yy = y(p["value"])
        if p.get("best"):
            out.append(f'<circle cx="{_f(x)}" cy="{_f(yy)}" r="9" fill="none" stroke="{BEST}" stroke-width="2"/>')
        out.append(f'<circle cx="{_f(x)}" cy="{_f(yy)}" r="5" fill="{BEST if p.get("best") else MUTED}">'
                   f'<title>{_e(p["label"])}: {_e(p["text"])}</title></circle>')
        out.append(f'<text x="{_f(x)}" y="{_f(yy - 13)}" text-anchor="middle" class="val">'
                   f'{_e(p["text"] + ("  best" if p.get("best") else ""))}</text>')
        out.append(f'<text x="{_f(x)}" y="{H - PAD_B + 18}" text-anchor="middle" class="tick">{_e(p["label"])}</text>')
    out.append("</svg>")
    return Markup("\n".join(out))


def automl(trials: Sequence[dict[str, Any]], *, minimize: bool, best_id: Any, title: str, unit: str = "") -> Markup:
    """Each completed trial as a dot, the best-so-far as a step line, the recorded best ringed."""
    pts = [(i, t) for i, t in enumerate(trials) if fmt.is_number(t["value"])]
    values = [t["value"] for _, t in pts]
    y = _domain(values)
    out = _frame(title, y, unit)
    n = len(trials)
    span = W - PAD_L - PAD_R
    x = lambda i: PAD_L + span * ((i + 0.5) / max(n, 1))  # noqa: E731
    best_so_far, path = None, []
    for i, t in pts:
        v = t["value"]
        if t["state"] == "COMPLETE" and t.get("feasible", True) and (best_so_far is None or (v < best_so_far if minimize else v > best_so_far)):
            if best_so_far is not None:
                path.append(f"L{_f(x(i))},{_f(y(best_so_far))}")
            best_so_far = v
            path.append(("M" if not path else "L") + f"{_f(x(i))},{_f(y(v))}")
    if path:
        path.append(f"L{_f(x(n - 1))},{_f(y(best_so_far))}")
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{GOOD}" stroke-width="2"/>')
    for i, t in pts:
        done = t["state"] == "COMPLETE" and t.get("feasible", True)
        is_best = best_id is not None and str(t["id"]) == str(best_id)
        fill = BEST if is_best else (SERIES[4] if done else "none")
        out.append(f'<circle cx="{_f(x(i))}" cy="{_f(y(t["value"]))}" r="{6 if is_best else 3.5}" fill="{fill}" '
                   f'stroke="{BEST if is_best else SERIES[4]}"><title>trial {_e(t["id"])} {_e(t["state"])}: '
                   f'{_e(fmt.num(t["value"], 6))}</title></circle>')
    out.append(f'<text x="{PAD_L + span / 2}" y="{H - 12}" text-anchor="middle" class="tick">trial (in order)</text>')
    legend_y = PAD_T + 10
    out.append(f'<line x1="{W - PAD_R + 8}" x2="{W - PAD_R + 26}" y1="{legend_y}" y2="{legend_y}" stroke="{GOOD}" '
               f'stroke-width="2"/><text x="{W - PAD_R + 30}" y="{legend_y}" dominant-baseline="middle" '
               f'class="lbl">best so far</text>')
    out.append(f'<circle cx="{W - PAD_R + 17}" cy="{legend_y + 18}" r="3.5" fill="none" stroke="{SERIES[4]}"/>'
               f'<text x="{W - PAD_R + 30}" y="{legend_y + 18}" dominant-baseline="middle" class="lbl">pruned/infeasible</text>')
    out.append("</svg>")
    return Markup("\n".join(out))


def stacked_bars(bars: Sequence[dict[str, Any]], series: Sequence[str], *, title: str) -> Markup:
    """bars: {label, parts: {series: rows}}; one stacked bar per iteration, total on top."""
    totals = [sum(b["parts"].get(s, 0) for s in series) for b in bars]
    y = _Y(0.0, max(max(totals, default=1), 1) * 1.12)
    out = _frame(title, y, "")
    n = len(bars)
    step = (W - PAD_L - PAD_R) / max(n, 1)
    bw = min(56.0, step * 0.6)
    for i, (b, total) in enumerate(zip(bars, totals)):
        x0 = PAD_L + step * (i + 0.5) - bw / 2
        acc = 0.0
        for j, s in enumerate(series):
            v = b["parts"].get(s, 0)
            if v <= 0:
                continue
            top, bottom = y(acc + v), y(acc)
            out.append(f'<rect x="{_f(x0)}" y="{_f(top)}" width="{_f(bw)}" height="{_f(bottom - top)}" '
                       f'fill="{SERIES[j % len(SERIES)]}"><title>{_e(b["label"])} {_e(s)}: {_e(v)}</title></rect>')
            acc += v
        out.append(f'<text x="{_f(x0 + bw / 2)}" y="{_f(y(total) - 6)}" text-anchor="middle" class="val">'
                   f'{_e(total)}</text>')
        out.append(f'<text x="{_f(x0 + bw / 2)}" y="{H - PAD_B + 18}" text-anchor="middle" class="tick">'
                   f'{_e(b["label"])}</text>')
    for j, s in enumerate(series):
        ly = PAD_T + 10 + 18 * j
        out.append(f'<rect x="{W - PAD_R + 8}" y="{ly - 6}" width="12" height="12" fill="{SERIES[j % len(SERIES)]}"/>'
                   f'<text x="{W - PAD_R + 26}" y="{ly}" dominant-baseline="middle" class="lbl">{_e(s)}</text>')
    out.append("</svg>")
    return Markup("\n".join(out))
