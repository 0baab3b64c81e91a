// Topology: a deterministic layered layout of services and external peers.
//
// Layer of a node = the longest chain of callers leading to it (callers on
// the left, callees on the right), computed by relaxing edges at most
// |nodes| times so call cycles cannot loop forever. Within a layer, nodes
// are sorted by id, so the same data always draws the same picture.
import {h, s, num, pct, ms, bytes} from "./dom.js";

const NODE_W = 170, NODE_H = 46, COL_W = 400, ROW_H = 140, MARGIN = 60;

export function layout(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let changed = false;
    for (const e of edges) {
      if (e.source === e.target || !layer.has(e.source) || !layer.has(e.target)) continue;
      const want = layer.get(e.source) + 1;
      if (want > layer.get(e.target) && want < nodes.length) { layer.set(e.target, want); changed = true; }
    }
    if (!changed) break;
  }
  const cols = new Map();
  for (const n of [...nodes].sort((a, b) => a.id.localeCompare(b.id))) {
    const l = layer.get(n.id);
    if (!cols.has(l)) cols.set(l, []);
    cols.get(l).push(n);
  }
  const rows = Math.max(1, ...[...cols.values()].map((c) => c.length));
  const pos = new Map();
  for (const [l, col] of cols) {
    const offset = ((rows - col.length) * ROW_H) / 2; // centre short columns
    col.forEach((n, i) => pos.set(n.id, {x: MARGIN + l * COL_W, y: MARGIN + offset + i * ROW_H}));
  }
  const width = MARGIN * 2 + (Math.max(0, ...cols.keys()) * COL_W) + NODE_W;
  const height = MARGIN * 2 + (rows - 1) * ROW_H + NODE_H;
  return {pos, width, height};
}

// edgeLabel is up to three short lines, so it fits between two columns:
// protocol and rate, success and p99, TCP volume and loss.
function edgeLabel(e) {
  const lines = [];
  const hp = e.http;
  if (hp && hp.requests > 0) {
    lines.push(`${e.protocol} · ${num(hp.rpm)} rpm`);
    lines.push(`${pct(hp.successRate)} ok · p99 ${ms(hp.latencyMs && hp.latencyMs.p99)}`);
  } else {
    lines.push(e.protocol || "TCP");
  }
  const t = e.tcp;
  if (t) {
    const extra = [bytes((t.bytesSent || 0) + (t.bytesRecv || 0))];
    if (t.retransmits) extra.push(`${num(t.retransmits)} retrans`);
    if (t.drops) extra.push(`${num(t.drops)} drops`);
    lines.push(extra.join(" · "));
  }
  return lines;
}

// render draws the graph; onNode(id) is called when a service node is clicked.
export function render(topo, onNode) {
  const nodes = topo.nodes || [], edges = topo.edges || [];
  const {pos, width, height} = layout(nodes, edges);
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "service topology"});
  svg.append(s("defs", {},
    s("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"},
      s("path", {d: "M0,0 L10,5 L0,10 z", fill: "#9aa3b2"})),
    s("marker", {id: "arrow-err", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"},
      s("path", {d: "M0,0 L10,5 L0,10 z", fill: "#d64545"}))));

  // Parallel edges between the same pair (e.g. HTTP/2 and TCP) fan out.
  const pairCount = new Map();
  for (const e of [...edges].sort((a, b) => (a.source + a.target + a.protocol).localeCompare(b.source + b.target + b.protocol))) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const key = e.source + "→" + e.target;
    const k = pairCount.get(key) || 0;
    pairCount.set(key, k + 1);
    const bend = k * 26;
    let d, lx, ly;
    if (e.source === e.target) {
      const x0 = a.x + NODE_W / 2, y0 = a.y;
      d = `M${x0 - 20},${y0} C${x0 - 50},${y0 - 60} ${x0 + 50},${y0 - 60} ${x0 + 20},${y0}`;
      lx = x0; ly = y0 - 52;
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + NODE_W : a.x + NODE_W / 2, y1 = forward ? a.y + NODE_H / 2 : a.y + NODE_H;
      const x2 = forward ? b.x : b.x + NODE_W / 2, y2 = forward ? b.y + NODE_H / 2 : b.y;
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 + bend;
      d = `M${x1},${y1} C${mx},${y1 + bend} ${mx},${y2 + bend} ${x2},${y2}`;
      lx = mx; ly = my - 8;
    }
    const cls = "edge" + (e.error ? " error" : "");
    const g = s("g", {class: cls, "data-source": e.source, "data-target": e.target},
      s("title", {}, `${e.source} → ${e.target} (${e.protocol})`),
      s("path", {d, "marker-end": e.error ? "url(#arrow-err)" : "url(#arrow)"}));
    // The label block sits just above the curve's midpoint, off the line.
    const lines = edgeLabel(e);
    lines.forEach((line, i) =>
      g.append(s("text", {x: lx, y: ly - (lines.length - 1 - i) * 14, "text-anchor": "middle"}, line)));
    svg.append(g);
  }

  for (const n of nodes) {
    const p = pos.get(n.id);
    const external = n.kind === "external";
    const g = s("g", {class: "node" + (external ? " external" : ""), "data-id": n.id,
      transform: `translate(${p.x},${p.y})`,
      onclick: external ? null : () => onNode(n.id)},
      s("rect", {width: NODE_W, height: NODE_H, rx: 8}),
      s("text", {x: NODE_W / 2, y: 20, "text-anchor": "middle"}, n.id),
      s("text", {class: "sub", x: NODE_W / 2, y: 36, "text-anchor": "middle"},
        external ? "external" : `namespace ${n.namespace || "?"}`));
    svg.append(g);
  }
  return h("div", {class: "topology"}, svg);
}
