// Weir dashboard: hash routing, 5-second polling, and the five views.
//
//   #/services            service table
//   #/topology            service graph
//   #/service/NAME        one service: summary, time series, endpoints
//   #/endpoints[/NAME]    endpoints of a service
//   #/pods                enrolled pods and the capture's hook tier
import {h, num, bytes, pct, ms, rateCell, parseDuration} from "./dom.js";
import * as api from "./api.js";
import {lineChart} from "./chart.js";
import * as topo from "./topology.js";

const REFRESH_MS = 5000;
const SERIES_STEP = {"5m": "15s", "15m": "30s", "30m": "1m"};

const view = document.getElementById("view");
const status = document.getElementById("status");
const windowSel = document.getElementById("window");

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return {name: parts[0] || "services", arg: parts.slice(1).join("/")};
}

// explain turns a failed request into the message the page shows.
function explain(err) {
  if (err instanceof api.Unreachable) return "weir-daemon unreachable";
  return err.message;
}

const empty = (text) => h("p", {class: "empty"}, text);

// ------------------------------------------------------------------ views

// NOT_A_SERVICE explains a service name no Kubernetes Service selects.
const NOT_A_SERVICE = "named by Weir (app label or owner), not by a Kubernetes Service selecting the pods: " +
  "SkyWalking shows these pods under this name in this node's data and as Unknown in other nodes' data";

async function servicesView(w) {
  const list = await api.services(w);
  if (list.length === 0) return [h("h1", {}, "Services"), empty("no traffic yet: no service has sent or received anything in this window")];
  list.sort((a, b) => a.name.localeCompare(b.name));
  const rows = list.map((sv) => {
    const hp = sv.http || {}, t = sv.tcp || {}, lat = hp.latencyMs || {};
    const open = () => { location.hash = `#/service/${encodeURIComponent(sv.name)}`; };
    return h("tr", {class: "link", onclick: open, "data-service": sv.name},
      h("td", {}, h("a", {href: `#/service/${encodeURIComponent(sv.name)}`}, sv.name),
        // Not a Service the OAP resolves: it names these pods Unknown in
        // other nodes' data.
        sv.kubernetesService ? null : h("span", {class: "unresolved", title: NOT_A_SERVICE}, " *")),
      h("td", {class: "text"}, sv.namespace),
      h("td", {}, num(sv.pods)),
      h("td", {}, hp.requests ? num(hp.rpm) : "–"),
      rateCell(hp.successRate, hp.requests),
      h("td", {}, hp.requests ? ms(lat.p50) : "–"),
      h("td", {}, hp.requests ? ms(lat.p99) : "–"),
      h("td", {}, bytes((t.bytesSent || 0) + (t.bytesRecv || 0))),
      h("td", {class: t.retransmits ? "bad" : ""}, num(t.retransmits || 0)),
      h("td", {class: t.drops ? "bad" : ""}, num(t.drops || 0)));
  });
  const own = list.filter((sv) => !sv.kubernetesService).length;
  return [
    h("h1", {}, "Services", h("small", {}, `${list.length} in the last ${w}`)),
    own ? h("p", {class: "note", id: "unresolved-note"}, `* ${NOT_A_SERVICE}`) : null,
    h("table", {id: "services"},
      h("thead", {}, h("tr", {},
        ["Service", "Namespace", "Pods", "HTTP rpm", "Success", "p50", "p99", "TCP bytes", "Retransmits", "Drops"]
          .map((c, i) => h("th", {class: i < 2 ? "text" : ""}, c)))),
      h("tbody", {}, rows)),
  ];
}

async function topologyView(w) {
  const t = await api.topology(w);
  const head = h("h1", {}, "Topology", h("small", {}, `${(t.nodes || []).length} nodes, ${(t.edges || []).length} edges`));
  if (!t.nodes || t.nodes.length === 0) return [head, empty("no traffic yet: no connections seen in this window")];
  return [head,
    h("div", {class: "legendbar"}, h("span", {}, "healthy edge"), h("span", {class: "err"}, "errors, drops or retransmits"),
      h("span", {}, "click a service for its charts")),
    topo.render(t, (id) => { location.hash = `#/service/${encodeURIComponent(id)}`; })];
}

function endpointsTable(list) {
  if (list.length === 0) return empty("no HTTP requests served by this service in this window");
  const sorted = [...list].sort((a, b) => (b.requests - a.requests) || a.endpoint.localeCompare(b.endpoint));
  return h("table", {class: "endpoints"},
    h("thead", {}, h("tr", {},
      ["Endpoint", "Requests", "rpm", "Success", "p50", "p90", "p99"].map((c, i) => h("th", {class: i === 0 ? "text" : ""}, c)))),
    h("tbody", {}, sorted.map((e) => {
      const lat = e.latencyMs || {};
      return h("tr", {"data-endpoint": e.endpoint},
        h("td", {}, e.method ? h("span", {}, h("b", {}, e.method), " ", e.path) : e.endpoint),
        h("td", {}, num(e.requests)), h("td", {}, num(e.rpm)), rateCell(e.successRate, e.requests),
        h("td", {}, ms(lat.p50)), h("td", {}, ms(lat.p90)), h("td", {}, ms(lat.p99)));
    })));
}

async function endpointsView(w, name) {
  const list = await api.services(w);
  if (list.length === 0) return [h("h1", {}, "Endpoints"), empty("no traffic yet: no services to list endpoints for")];
  const names = list.map((sv) => sv.name).sort();
  if (!name || !names.includes(name)) {
    // Default to the service serving the most requests.
    name = [...list].sort((a, b) => ((b.http || {}).requests || 0) - ((a.http || {}).requests || 0))[0].name;
  }
  const eps = await api.endpoints(name, w);
  const select = h("select", {id: "endpoint-service", onchange: (ev) => { location.hash = `#/endpoints/${encodeURIComponent(ev.target.value)}`; }},
    names.map((n) => h("option", {value: n, selected: n === name}, n)));
  return [h("h1", {}, "Endpoints"), h("div", {class: "toolbar"}, "service", select,
    h("a", {href: `#/service/${encodeURIComponent(name)}`}, "charts →")), endpointsTable(eps)];
}

async function serviceView(w, name) {
  if (!name) return [empty("no service named in the address")];
  const detailWindow = w === "5m" ? "15m" : w; // a 5-minute chart is too short to read
  let ser;
  try {
    ser = await api.series(name, detailWindow, SERIES_STEP[detailWindow]);
  } catch (e) {
    if (!(e instanceof api.APIError) || e.status !== 400) throw e;
    ser = await api.series(name, detailWindow); // the daemon's own step
  }
  const [list, eps] = await Promise.all([api.services(w), api.endpoints(name, w)]);
  const sv = list.find((x) => x.name === name);
  const hp = (sv && sv.http) || {}, t = (sv && sv.tcp) || {}, lat = hp.latencyMs || {};
  const card = (k, v, cls) => h("div", {class: "card"}, h("div", {class: "k"}, k), h("div", {class: "v " + (cls || "")}, v));
  const cards = h("div", {class: "cards"},
    card("pods", sv ? num(sv.pods) : "–"),
    card("HTTP rpm", hp.requests ? num(hp.rpm) : "–"),
    card("success", hp.requests ? pct(hp.successRate) : "–", hp.requests && hp.successRate < 0.95 ? "bad" : ""),
    card("p50 / p99", hp.requests ? `${ms(lat.p50)} / ${ms(lat.p99)}` : "–"),
    card("TCP sent / recv", `${bytes(t.bytesSent || 0)} / ${bytes(t.bytesRecv || 0)}`),
    card("retransmits", num(t.retransmits || 0), t.retransmits ? "bad" : ""),
    card("drops", num(t.drops || 0), t.drops ? "bad" : ""),
    card("RTT", t.rttMs ? ms(t.rttMs) : "–"));

  const points = ser.points || [];
  const stepMin = parseDuration(ser.step) / 60000;
  const times = points.map((p) => new Date(p.time));
  const col = (f) => points.map(f);
  const charts = h("div", {class: "charts"},
    lineChart("HTTP requests per minute", times, [{name: "rpm", values: col((p) => p.httpRequests / stepMin)}], num),
    lineChart("HTTP success rate", times,
      [{name: "success", values: col((p) => p.httpRequests ? 1 - p.httpErrors / p.httpRequests : NaN)}], pct),
    lineChart("HTTP latency", times, [
      {name: "p99", values: col((p) => p.httpRequests ? p.p99Ms : NaN)},
      {name: "avg", values: col((p) => p.httpRequests ? p.avgMs : NaN)}], ms),
    lineChart("TCP bytes", times, [
      {name: "sent", values: col((p) => p.bytesSent)}, {name: "received", values: col((p) => p.bytesRecv)}], bytes),
    lineChart("TCP retransmits and drops", times, [
      {name: "retransmits", values: col((p) => p.retransmits)}, {name: "drops", values: col((p) => p.drops)}], num),
    lineChart("TCP connects", times, [{name: "connects", values: col((p) => p.connects)}], num));
  return [
    h("h1", {}, name, h("small", {}, sv ? `namespace ${sv.namespace}` : "no traffic in this window")),
    cards, h("h2", {}, `Last ${detailWindow}`), charts,
    h("h2", {}, "Endpoints"), endpointsTable(eps)];
}

async function podsView() {
  const [pods, feat] = await Promise.all([api.pods(), api.features().catch((e) => e)]);
  const out = [h("h1", {}, "Pods", h("small", {}, `${pods.length} enrolled on this node`))];
  out.push(pods.length === 0 ? empty("no pods enrolled: the weir CNI plugin has not attached any pod yet") :
    h("table", {id: "pods"},
      h("thead", {}, h("tr", {}, ["Namespace", "Pod", "IPs", "Host veth", "Netns inode", "Enrolled"].map((c) => h("th", {class: "text"}, c)))),
      h("tbody", {}, [...pods].sort((a, b) => (a.namespace + a.name).localeCompare(b.namespace + b.name)).map((p) =>
        h("tr", {"data-pod": `${p.namespace}/${p.name}`},
          h("td", {}, p.namespace), h("td", {class: "text"}, p.name), h("td", {class: "text"}, (p.ips || []).join(", ")),
          h("td", {class: "text"}, p.hostVeth || "–"), h("td", {class: "text"}, String(p.netnsInode || "–")),
          h("td", {class: "text"}, p.enrolledAt ? new Date(p.enrolledAt).toLocaleString() : "–"))))));
  out.push(h("h2", {}, "Capture"), featuresPanel(feat));
  return out;
}

// hooksOpen keeps the hook list open across the 5-second re-renders.
let hooksOpen = false;

// featuresPanel shows what the capture measures on this node (the
// /api/v1/features view): whether it runs, its hook tier, each kernel
// metric's availability with the reason, and every hook. A metric the
// kernel cannot provide is explained here rather than shown as zero.
function featuresPanel(feat) {
  if (feat instanceof Error) return h("p", {class: "empty"}, `hook features unavailable: ${explain(feat)}`);
  const badge = (on, yes, no) => h("span", {class: "badge " + (on ? "on" : "off")}, on ? yes : no);
  const statusTable = (id, rows, cols) => h("table", {id},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {class: "text"}, c)))),
    h("tbody", {}, rows));
  const hooks = feat.hooks || [], metrics = feat.metrics || [], tiers = feat.tiers || [];
  const attached = hooks.filter((k) => k.available).length;
  return h("div", {class: "panel", id: "features"},
    h("p", {}, "capture ", badge(feat.capture, "running", "off"), feat.reason ? ` ${feat.reason}` : "",
      feat.capture ? ["  payload ", h("span", {id: "payload", title: feat.payload ? "" : "bpf.payload=false: connections and kernel metrics only, no HTTP records"},
        badge(feat.payload, "captured", "off"))] : null,
      "  hook tier: ", h("b", {id: "tier"}, feat.tier || "none")),
    tiers.length === 0 ? null : h("p", {class: "tiers"}, "tiers: ", tiers.map((ti) =>
      h("span", {title: ti.reason || ""}, badge(ti.available, ti.tier, ti.tier + " unavailable"), " "))),
    metrics.length === 0 ? null : [h("h2", {}, "Kernel metrics"), statusTable("metrics",
      metrics.map((m) => h("tr", {}, h("td", {}, m.name), h("td", {class: "text"}, badge(m.available, "measured", "unavailable")),
        h("td", {class: "text muted"}, m.reason || ""))), ["Metric", "State", "Reason"])],
    hooks.length === 0 ? null : h("details", {open: hooksOpen, ontoggle: (ev) => { hooksOpen = ev.target.open; }},
      h("summary", {}, `${hooks.length} hooks, ${attached} attached`),
      statusTable("hooks", hooks.map((k) => h("tr", {}, h("td", {}, k.name), h("td", {class: "text"}, k.tier),
        h("td", {class: "text"}, badge(k.available, "attached", "off")), h("td", {class: "text muted"}, k.reason || ""))),
      ["Hook", "Tier", "State", "Reason"])));
}

const VIEWS = {services: servicesView, topology: topologyView, service: serviceView, endpoints: endpointsView, pods: podsView};

// ---------------------------------------------------------------- refresh

let generation = 0; // a newer render supersedes a slower older one

async function refresh() {
  const r = route();
  const gen = ++generation;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === r.name || (r.name === "service" && a.dataset.view === "services"));
  }
  const fn = VIEWS[r.name];
  let content, failure = null;
  try {
    content = fn ? await fn(windowSel.value, r.arg) : [empty(`no view "${r.name}"`)];
  } catch (err) {
    failure = err;
    content = [h("p", {class: "error", id: "error"}, explain(err))];
  }
  if (gen !== generation) return;
  view.replaceChildren(...content);
  view.dataset.view = r.name;
  view.dataset.loaded = String(gen);
  status.textContent = !failure ? `updated ${new Date().toLocaleTimeString()}` :
    failure instanceof api.Unreachable ? "weir-daemon unreachable" : "API error";
  status.classList.toggle("down", failure !== null);
}

windowSel.addEventListener("change", refresh);
window.addEventListener("hashchange", refresh);
setInterval(refresh, REFRESH_MS);
refresh();
