"""One self-contained web page that steps through a ``StepThrough``: ``minibert trace --html OUT``.

    write_html(walk, "trace.html")          # open it from disk: no server, no network, nothing to install

The page lists the steps, forward then backward; the arrow keys (or a click) move from one to the next.
A step shows its formula, the file and line of minibert that runs it, a link to the derivation of its
backward, and each of its tensors as a heatmap (red positive, blue negative; a small matrix also prints
its numbers); hovering over a cell shows its index and its value.  Everything is inline (CSS, script and
data): it works from ``file://``.

The data is the trace as JSON in ``<script type="application/json" id="minibert-trace">``, for other tools::

    {"sentence": str, "loss": float, "mlm_loss": float, "nsp_loss": float | null, "model": str,
     "tokens": [[piece, ...] per row], "words": [piece per id] | null,
     "steps": [{"index", "name", "phase": "forward" | "backward", "op", "formula", "source", "doc",
                "source_href", "doc_href", "grads": [parameter names],
                "tensors": [{"name", "role": "in" | "out", "shape", "axes", "data": [flat values, row-major],
                             "rows_shown": n or null}]}]}

A tensor larger than ``max_values`` numbers keeps only its first rows (``rows_shown`` of ``shape[0]``):
the embedding tables of a real vocabulary would otherwise weigh megabytes.  Values are written in the
shortest form that reads back to the same number of the tensor's dtype.
"""
import html
import json
from pathlib import Path

import numpy as np

__all__ = ["trace_json", "write_html"]

_ROOT = Path(__file__).resolve().parents[2]  # the repository, when minibert runs from a clone


def _default_doc_href(doc):
    """A derivation page of the clone minibert runs from (``file://``), or None."""
    path = _ROOT / doc
    return path.as_uri() if path.is_file() else None


def _default_source_href(source):
    path = _ROOT / source.rsplit(":", 1)[0]
    return path.as_uri() if path.is_file() else None


def _values(a):
    """Flat list of numbers of ``a``: the shortest decimal that reads back to the same float32/float64."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.ravel().astype(np.int64).tolist()
    if a.dtype == np.float32:
        return [float(str(v)) for v in a.ravel()]
    return [float(v) for v in a.astype(np.float64).ravel()]


def trace_json(walk, max_values=20000, max_param_values=2048, doc_href=None, source_href=None):
    """The ``StepThrough`` as a JSON-ready dict (see the module's docstring).  A tensor keeps its first rows
    up to ``max_values`` numbers, or ``max_param_values`` for a parameter or its gradient (no batch,
    token or masked-position axis: the weights repeat at every step that uses them).  ``doc_href(doc) ->
    str`` and ``source_href(source) -> str`` make the links (default: files of this clone, ``file://``)."""
    doc_href = doc_href or _default_doc_href
    source_href = source_href or _default_source_href
    steps = []
    for s in walk.steps:
        tensors = []
        for role, group in (("in", s.inputs), ("out", s.outputs)):
            for name, value in group.items():
                a = np.asarray(value)
                rows = None
                axes = s.axes.get(name, "")
                limit = max_values if set(axes) & set("BTP") else max_param_values
                if a.size > limit and a.ndim >= 1:
                    rows = max(1, limit // max(1, a.size // a.shape[0]))
                    a = a[:rows]
                tensors.append({"name": name, "role": role, "shape": list(np.shape(value)),
                                "axes": axes, "data": _values(a), "rows_shown": rows})
        steps.append({"index": s.index, "name": s.name, "phase": s.phase, "op": s.op, "formula": s.formula,
                      "source": s.source, "doc": s.doc, "source_href": source_href(s.source),
                      "doc_href": doc_href(s.doc) if s.doc else None, "grads": list(s.grads), "tensors": tensors})
    return {"sentence": walk.sentence, "loss": walk.loss, "mlm_loss": walk.mlm_loss, "nsp_loss": walk.nsp_loss,
            "model": walk.model_name, "tokens": walk.tokens, "words": walk.words, "steps": steps}


def write_html(walk, path, title=None, max_values=20000, max_param_values=2048, doc_href=None, source_href=None):
    """Write the page of ``walk`` (a ``StepThrough``) to ``path``; returns the path.  See ``trace_json`` for
    the arguments.  The page's title: ``title``, else the sentence."""
    data = trace_json(walk, max_values, max_param_values, doc_href, source_href)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("</", "<\\/")  # no "</script>" can end the data early
    title = title or f"minibert trace: {walk.sentence or 'one batch'}"
    page = _PAGE.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", text)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"write_html: the folder {str(path.parent)!r} does not exist")
    path.write_text(page, encoding="utf-8")
    return path


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #222; display: flex; height: 100vh; }
#list { width: 330px; overflow-y: auto; border-right: 1px solid #ccc; padding: 6px 0; flex: none; }
#list h3 { margin: 8px 10px 2px; font-size: 13px; text-transform: uppercase; color: #666; }
#list div { padding: 1px 10px; cursor: pointer; font: 12px/1.5 ui-monospace, monospace; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
#list div.current { background: #ffe9a8; }
#list div.backward { color: #7a2e00; }
#main { flex: auto; overflow: auto; padding: 10px 18px 80px; }
#head { color: #444; margin-bottom: 6px; }
#step-name { font: bold 17px ui-monospace, monospace; margin: 6px 0; }
#formula { font: 15px ui-monospace, monospace; white-space: pre-wrap; background: #f4f4f4; padding: 6px 8px; border-radius: 4px; }
.meta { margin: 6px 0; color: #444; }
.tensor { margin: 14px 0 4px; }
.tensor h4 { margin: 0 0 4px; font: bold 13px ui-monospace, monospace; }
.tensor .shape { font-weight: normal; color: #666; }
.maps { display: flex; flex-wrap: wrap; gap: 10px; }
table.map { border-collapse: collapse; font: 10px ui-monospace, monospace; }
table.map td { width: 14px; height: 14px; padding: 0; text-align: center; border: 1px solid #fff; }
table.map.numbers td { min-width: 40px; height: 18px; padding: 0 2px; }
table.map th { font-weight: normal; color: #555; padding: 0 3px; white-space: nowrap; }
table.map caption { font: 11px ui-monospace, monospace; color: #555; text-align: left; }
#hover { position: fixed; bottom: 0; left: 330px; right: 0; background: #222; color: #fff; padding: 6px 12px;
  font: 13px ui-monospace, monospace; min-height: 18px; }
kbd { border: 1px solid #aaa; border-radius: 3px; padding: 0 3px; font-size: 12px; }
</style></head>
<body>
<nav id="list"></nav>
<main id="main">
  <div id="head"></div>
  <div id="step-name"></div>
  <div class="meta" id="position"></div>
  <div id="formula"></div>
  <div class="meta" id="links"></div>
  <div id="tensors"></div>
</main>
<div id="hover">hover over a cell to see its value</div>
<script type="application/json" id="minibert-trace">{{DATA}}</script>
<script>
"use strict";
const trace = JSON.parse(document.getElementById("minibert-trace").textContent);
const steps = trace.steps;
let current = 0;
const el = id => document.getElementById(id);
function text(tag, content, cls) {
  const e = document.createElement(tag);
  if (content !== undefined) e.textContent = content;
  if (cls) e.className = cls;
  return e;
}
function fmt(v) { return Math.abs(v) >= 1e30 ? v.toExponential(3) : Number(v.toPrecision(3)).toString(); }

// the list of steps
const list = el("list");
for (const phase of ["forward", "backward"]) {
  list.appendChild(text("h3", phase));
  for (const s of steps.filter(s => s.phase === phase)) {
    const item = text("div", s.index + " " + s.name, phase);
    item.id = "item-" + s.index;
    item.title = s.op + ": " + s.formula;
    item.onclick = () => show(s.index);
    list.appendChild(item);
  }
}
el("head").textContent = (trace.sentence ? "\u201c" + trace.sentence + "\u201d \u00b7 " : "") + trace.model +
  " \u00b7 loss " + trace.loss.toFixed(4) + " = MLM " + trace.mlm_loss.toFixed(4) +
  (trace.nsp_loss === null ? "" : " + NSP " + trace.nsp_loss.toFixed(4)) + " \u00b7 ";
el("head").insertAdjacentHTML("beforeend", "<kbd>\u2192</kbd> next, <kbd>\u2190</kbd> previous");

// labels of an axis: T is a token of batch row b, V a word of the vocabulary
function labels(axis, n, b) {
  if (axis === "T" && trace.tokens && trace.tokens[b] && trace.tokens[b].length >= n) return trace.tokens[b].slice(0, n);
  if (axis === "V" && trace.words && trace.words.length >= n) return trace.words.slice(0, n);
  return null;
}
function colour(v, scale) {
  const x = Math.max(-1, Math.min(1, v / scale));
  const c = Math.round(255 * (1 - Math.abs(x)));
  return x >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`;
}
function drawTensor(t) {
  const box = text("div", undefined, "tensor");
  const h = text("h4", (t.role === "in" ? "in  " : "out ") + t.name + " ");
  let shape = "(" + t.shape.join(", ") + ")" + (t.axes ? " " + t.axes : "");
  if (t.rows_shown !== null) shape += ` \u2014 the first ${t.rows_shown} of ${t.shape[0]} rows shown`;
  h.appendChild(text("span", shape, "shape"));
  box.appendChild(h);
  const data = t.data, shape_ = t.rows_shown === null ? t.shape : [t.rows_shown].concat(t.shape.slice(1));
  let scale = 0;
  for (const v of data) if (Math.abs(v) < 1e30 && Math.abs(v) > scale) scale = Math.abs(v);
  scale = scale || 1;
  const nd = shape_.length;
  const cols = nd >= 1 ? shape_[nd - 1] : 1, rows = nd >= 2 ? shape_[nd - 2] : 1;
  const lead = shape_.slice(0, Math.max(0, nd - 2));
  const nMaps = lead.reduce((a, b) => a * b, 1);
  const axes = t.axes || "";
  const rowAxis = nd >= 2 ? axes[nd - 2] : "", colAxis = nd >= 1 ? axes[nd - 1] : "";
  const maps = text("div", undefined, "maps");
  const numbers = cols <= 16 && rows * cols * nMaps <= 2000;
  for (let m = 0; m < nMaps; m++) {
    const idx = []; let r = m;
    for (let k = lead.length - 1; k >= 0; k--) { idx.unshift(r % lead[k]); r = Math.floor(r / lead[k]); }
    const b = axes[0] === "B" && idx.length ? idx[0] : 0;
    const table = text("table", undefined, "map" + (numbers ? " numbers" : ""));
    if (idx.length) table.appendChild(text("caption", t.name + "[" + idx.join(", ") + "]"));
    const colLabels = labels(colAxis, cols, b), rowLabels = labels(rowAxis, rows, b);
    if (colLabels && numbers) {
      const tr = text("tr"); tr.appendChild(text("th"));
      for (const l of colLabels) tr.appendChild(text("th", l));
      table.appendChild(tr);
    }
    for (let i = 0; i < rows; i++) {
      const tr = text("tr");
      tr.appendChild(text("th", rowLabels ? rowLabels[i] : (nd >= 2 ? String(i) : "")));
      for (let j = 0; j < cols; j++) {
        const flat = (m * rows + i) * cols + j;
        const v = data[flat];
        const td = text("td", numbers ? fmt(v) : undefined);
        td.style.background = colour(v, scale);
        if (Math.abs(v) > 0.6 * scale) td.style.color = "#fff";  // dark cells: white digits
        const index = idx.concat(nd >= 2 ? [i, j] : nd === 1 ? [j] : []);
        td.dataset.flat = flat;
        td.dataset.index = index.join(",");
        const where = t.name + "[" + index.join(", ") + "]" +
          (rowLabels ? "  row " + rowLabels[i] : "") + (colLabels ? "  column " + colLabels[j] : "");
        td.title = where + " = " + v;
        td.onmouseenter = () => { el("hover").textContent = where + " = " + v; };
        tr.appendChild(td);
      }
      table.appendChild(tr);
    }
    maps.appendChild(table);
  }
  box.appendChild(maps);
  return box;
}
function show(i) {
  current = Math.max(0, Math.min(steps.length - 1, i));
  const s = steps[current];
  document.querySelectorAll("#list div.current").forEach(d => d.classList.remove("current"));
  const item = el("item-" + current);
  item.classList.add("current");
  item.scrollIntoView({block: "nearest"});
  el("step-name").textContent = s.name;
  el("position").textContent = `step ${current + 1} of ${steps.length} \u00b7 ${s.phase} \u00b7 ${s.op}`;
  el("formula").textContent = s.formula;
  const links = el("links");
  links.textContent = "source: ";
  const src = text(s.source_href ? "a" : "code", s.source);
  if (s.source_href) src.href = s.source_href;
  links.appendChild(src);
  if (s.doc) {
    links.appendChild(document.createTextNode(" \u00b7 derivation: "));
    const d = text(s.doc_href ? "a" : "code", s.doc);
    d.id = "doc-link";
    if (s.doc_href) d.href = s.doc_href;
    links.appendChild(d);
  }
  if (s.grads.length) links.appendChild(document.createTextNode(" \u00b7 gradient of: " + s.grads.join(", ")));
  const box = el("tensors");
  box.textContent = "";
  for (const t of s.tensors) box.appendChild(drawTensor(t));
  el("hover").textContent = "hover over a cell to see its value";
  if (location.hash !== "#step-" + current) history.replaceState(null, "", "#step-" + current);
}
document.addEventListener("keydown", e => {
  if (e.key === "ArrowRight" || e.key === "ArrowDown" || e.key === "j") { show(current + 1); e.preventDefault(); }
  else if (e.key === "ArrowLeft" || e.key === "ArrowUp" || e.key === "k") { show(current - 1); e.preventDefault(); }
  else if (e.key === "Home") show(0);
  else if (e.key === "End") show(steps.length - 1);
});
function fromHash() {  // #step-11 opens step 11 (a link can point at one step)
  const m = /^#step-(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : 0;
}
window.addEventListener("hashchange", () => { if (fromHash() !== current) show(fromHash()); });
show(fromHash());
</script>
</body></html>
"""
