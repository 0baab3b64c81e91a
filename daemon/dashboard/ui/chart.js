// A small SVG time-series line chart: one or more series over shared times.
import {h, s} from "./dom.js";

const W = 460, H = 176, PAD = {l: 56, r: 12, t: 10, b: 40};
const COLORS = ["#2f6fde", "#d98b1b", "#1f9d55", "#d64545"];

// lineChart(title, times (Date[]), [{name, values: number[]}], fmt)
export function lineChart(title, times, series, fmt) {
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title});
  const all = series.flatMap((se) => se.values.filter((v) => isFinite(v)));
  if (times.length === 0 || all.length === 0) {
    svg.append(s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick"}, "no data in this window"));
    return h("div", {class: "panel chart"}, h("h3", {}, title), svg);
  }
  let max = Math.max(...all), min = Math.min(0, ...all);
  if (max === min) max = min + 1;
  const t0 = times[0].getTime(), t1 = times[times.length - 1].getTime();
  const span = Math.max(t1 - t0, 1);
  const x = (t) => PAD.l + ((t.getTime() - t0) / span) * (W - PAD.l - PAD.r);
  const y = (v) => PAD.t + (1 - (v - min) / (max - min)) * (H - PAD.t - PAD.b);

  for (const frac of [0, 0.5, 1]) {
    const v = min + frac * (max - min);
    svg.append(s("line", {class: "axis", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v)}));
    svg.append(s("text", {class: "tick", x: PAD.l - 6, y: y(v) + 3, "text-anchor": "end"}, fmt(v)));
  }
  const clock = (d) => d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  svg.append(s("text", {class: "tick", x: PAD.l, y: H - PAD.b + 14}, clock(times[0])));
  svg.append(s("text", {class: "tick", x: W - PAD.r, y: H - PAD.b + 14, "text-anchor": "end"},
    clock(times[times.length - 1])));

  series.forEach((se, i) => {
    let d = "", pen = "M";
    se.values.forEach((v, j) => {
      if (!isFinite(v)) { pen = "M"; return; } // a gap, not a fake zero
      d += `${pen}${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = "L";
    });
    const color = COLORS[i % COLORS.length];
    svg.append(s("path", {class: "line", d, stroke: color}));
    if (series.length > 1) {
      const lx = PAD.l + i * 110;
      svg.append(s("rect", {x: lx, y: H - 8, width: 12, height: 3, fill: color}));
      svg.append(s("text", {class: "legend", x: lx + 16, y: H - 4}, se.name));
    }
  });
  return h("div", {class: "panel chart"}, h("h3", {}, title), svg);
}
