// mfvan live dashboard: one WebSocket to mfvan-web (/ws), no libraries, nothing fetched from
// elsewhere. Message format: docs/integrating.md. window.mfvan exposes what tests read.
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const WINDOW_S = 60; // the timeline shows the last minute
const COUNTERS = ["frames", "micro", "macro", "pairs_sent", "pairs_refused", "pairs_nocrop", "macro_refused",
  "tracks", "lost", "gaps", "overruns", "stalls"];
const ALARMS = new Set(["pairs_refused", "pairs_nocrop", "macro_refused", "gaps", "overruns", "stalls"]);

const state = { cameras: new Map(), engines: new Map(), health: {}, bridge: null, stale_s: 3 };
const latency = { result: [], hb: [] }; // PUB -> browser, ms (publisher's clock vs ours)
window.mfvan = { state, latency, messages: 0 };

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const nowNs = () => (performance.timeOrigin + performance.now()) * 1e6;
const clock = (ns) => new Date(ns / 1e6).toLocaleTimeString([], { hour12: false });
const pct = (p) => `${(100 * p).toFixed(0)}%`;

function camera(name) {
  let cam = state.cameras.get(name);
  if (cam) return cam;
  $("#empty")?.remove();
  const root = el("section", { class: "camera", "data-camera": name, "data-testid": `camera-${name}` },
    el("h2", {}, el("span", { text: name }), el("span", { class: "pill", "data-role": "health", text: "no status yet" })),
    el("div", { class: "faces", "data-role": "faces" }),
    el("div", { class: "timeline", "data-role": "timeline" }, el("span", { class: "scale", text: `last ${WINDOW_S} s` })),
    el("div", { class: "latest", "data-role": "latest" }, el("p", { class: "none", text: "No micro-expression yet." })),
    el("ol", { class: "events", "data-role": "events" }),
    el("dl", { class: "counters", "data-role": "counters" }));
  const main = $("#cameras");
  main.insertBefore(root, [...main.children].find((c) => c.dataset.camera > name) || null);
  cam = { name, root, events: [], tracks: new Map(), status: null };
  state.cameras.set(name, cam);
  return cam;
}

function addEvent(msg) {
  const cam = camera(msg.camera);
  const kind = msg.type === "result" ? "micro" : "macro";
  const onset = Number(msg.onset_ts_ns), offset = Number(msg.offset_ts_ns ?? msg.apex_ts_ns);
  cam.events.push({ kind, onset, offset, label: msg.label ?? "macro" });
  if (cam.events.length > 500) cam.events.shift();
  cam.tracks.set(msg.track, Date.now());
  const ms = (Number(msg.offset_ts_ns) - Number(msg.onset_ts_ns)) / 1e6;
  const text = kind === "micro"
    ? ` ${msg.label} ${pct(msg.probs[msg.label])} · ${ms.toFixed(0)} ms · track ${msg.track}`
    : ` ${ms.toFixed(0)} ms · score ${msg.score.toFixed(1)} · track ${msg.track}`;
  const li = el("li", { class: `event ${kind}`, "data-kind": kind, "data-label": msg.label ?? "",
    "data-seq": String(msg.seq) }, `${clock(Number(msg.apex_ts_ns))} `, el("b", { text: kind.toUpperCase() }), text);
  const list = $("[data-role=events]", cam.root);
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
  if (msg.type === "result") showResult(cam, msg);
  drawFaces(cam);
}

function showResult(cam, msg) {
  const box = $("[data-role=latest]", cam.root);
  box.replaceChildren();
  const img = el("img", { class: "heatmap", "data-role": "heatmap", "data-seq": String(msg.seq),
    alt: msg.apex_crop_png ? "fused heatmap over the apex crop" : "fused heatmap" });
  if (msg.overlay_png) img.src = `data:image/png;base64,${msg.overlay_png}`;
  const probs = el("div", { class: "probs" }, el("div", { class: "label", "data-role": "label", text: msg.label }));
  const ranked = Object.entries(msg.probs).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of ranked) {
    probs.append(el("div", { class: `bar${name === msg.label ? " top" : ""}`, "data-class": name },
      Object.assign(el("i"), { style: `width:${pct(p)}` }), el("em", { text: `${name} ${p.toFixed(2)}` })));
  }
  const ms = Number(msg.duration_ns) / 1e6;
  probs.append(el("div", { class: "meta", text: `frames ${msg.onset_index}→${msg.apex_index}→${msg.offset_index} · ` +
    `${ms.toFixed(0)} ms · track ${msg.track} · seq ${msg.seq} · latency ${msg.latency_ms?.toFixed(0) ?? "?"} ms` +
    (msg.gap ? ` · ${msg.gap} lost before` : "") }));
  const thumbs = el("div", { class: "thumbs" });
  for (const [name, png] of Object.entries(msg.heatmaps || {})) {
    thumbs.append(el("figure", {}, el("img", { src: `data:image/png;base64,${png}`, alt: `${name} heatmap` }),
      el("figcaption", { text: name })));
  }
  probs.append(thumbs);
  box.append(img, probs);
}

function drawFaces(cam) {
  const box = $("[data-role=faces]", cam.root);
  const c = cam.status?.counters ?? {};
  const now = Date.now();
  const chips = [...cam.tracks.entries()].filter(([, t]) => now - t < WINDOW_S * 1000).map(([id]) =>
    el("span", { class: "chip", text: `face ${id}` }));
  const tracked = c.tracks !== undefined ? Math.max(0, (c.tracks ?? 0) - (c.lost ?? 0)) : "?";
  box.replaceChildren(el("b", { "data-role": "tracked", text: `faces tracked: ${tracked}` }),
    el("span", { class: "muted", text: chips.length ? " · with events in the last minute:" : "" }), ...chips);
}

function drawTimeline(cam) {
  const line = $("[data-role=timeline]", cam.root);
  const now = nowNs(), span = WINDOW_S * 1e9;
  for (const t of line.querySelectorAll(".tick")) t.remove();
  let lastLabel = -100;
  for (const ev of cam.events) {
    if (ev.offset < now - span) continue;
    const left = Math.max(0, (ev.onset - (now - span)) / span) * 100;
    const width = Math.max(0.4, ((ev.offset - ev.onset) / span) * 100);
    const tick = el("div", { class: `tick ${ev.kind}`, style: `left:${left}%;width:${width}%`, title: ev.label });
    if (ev.kind === "micro" && left - lastLabel > 9) { // labels that would overlap are left to the tooltip
      tick.append(el("span", { text: ev.label, style: left > 85 ? "left:auto;right:0" : "" }));
      lastLabel = left;
    }
    line.append(tick);
  }
}

function setStatus(msg) {
  if (msg.component.startsWith("streamer-")) {
    const cam = camera(msg.component.slice("streamer-".length));
    cam.status = msg;
    const dl = $("[data-role=counters]", cam.root);
    dl.replaceChildren(...COUNTERS.filter((k) => k in msg.counters).map((k) =>
      el("div", { class: ALARMS.has(k) && msg.counters[k] > 0 ? "alarm" : "", "data-counter": k },
        el("dt", { text: k.replace("_", " ") }), el("dd", { text: String(msg.counters[k]) }))));
    drawFaces(cam);
  } else {
    const eng = state.engines.get(msg.component) ?? {};
    state.engines.set(msg.component, { ...eng, status: msg });
  }
}

function drawHealth() {
  const box = $("#engines");
  const rows = Object.values(state.health);
  box.replaceChildren(...rows.filter((h) => h.role === "engine").map((h) => {
    const st = state.engines.get(h.component)?.status;
    const model = st?.model ? `${st.model.name} [${st.model.labels.join(", ")}] ${st.model.backend}/${st.model.precision}` : "";
    const c = st?.counters ?? {};
    return el("div", { class: `engine${h.stopped ? " stopped" : ""}`, "data-component": h.component,
      "data-healthy": String(h.healthy),
      "data-testid": "engine" },
      el("span", { class: `pill ${h.healthy ? "ok" : h.stopped ? "" : "bad"}`,
        text: h.healthy ? "engine ok" : h.stopped ? "engine stopped" : "ENGINE DOWN" }),
      ` ${h.component} · hb ${h.hb_seq ?? "-"} · ${h.healthy ? `${h.age_s.toFixed(1)} s ago` : h.why}`,
      el("span", { class: "muted", text: ` · ${model} · pairs ${c.pairs_in ?? 0} → results ${c.results_out ?? 0}` }));
  }));
  for (const cam of state.cameras.values()) {
    const h = state.health[`streamer-${cam.name}`];
    const pill = $("[data-role=health]", cam.root);
    if (!h) continue;
    cam.root.dataset.healthy = String(h.healthy || h.stopped);
    pill.className = `pill ${h.healthy ? (h.state === "running" ? "ok" : "warn") : "bad"}`;
    const engineDown = Object.values(state.health).some((e) => e.role === "engine" && !e.healthy && !e.stopped);
    cam.root.dataset.stopped = String(h.stopped);
    if (h.stopped) pill.className = "pill";
    pill.textContent = h.healthy ? h.state : h.stopped ? "stopped (replay ended)"
      : `unhealthy: ${h.why}${engineDown ? " (its status comes through the engine)" : ""}`;
  }
  const b = state.bridge;
  if (b) {
    const inv = Object.entries(b.upstream.invalid).map(([k, v]) => `${k} ${v}`).join(", ") || "0";
    $("#bridge").textContent = `${b.upstream.received} received · missing by sequence ${b.upstream.missing} · ` +
      `invalid ${inv} · dropped for this page ${b.dropped} · ${b.clients} viewer(s)${b.crops ? "" : " · crops not published"}`;
  }
}

// history replayed on connect is old by design: only messages the bridge got after we joined count
const live = (msg) => Number(msg.received_ns) >= (state.since ?? Infinity);

function onMessage(msg) {
  window.mfvan.messages += 1;
  switch (msg.type) {
    case "hello": state.stale_s = msg.stale_s; state.since = Number(msg.ts_ns); break;
    case "result":
      if (live(msg)) latency.result.push(nowNs() / 1e6 - Number(msg.published_ns) / 1e6);
      addEvent(msg); break;
    case "macro": addEvent(msg); break;
    case "status": setStatus(msg); break;
    case "hb": {
      if (live(msg)) latency.hb.push(nowNs() / 1e6 - Number(msg.ts_ns) / 1e6);
      const eng = state.engines.get(msg.component) ?? {};
      state.engines.set(msg.component, { ...eng, hb: msg });
      break;
    }
    case "bridge": state.health = msg.health; state.bridge = msg; drawHealth(); break;
  }
}

let backoff = 500;
function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  const ws = new WebSocket(url);
  const conn = $("#conn");
  ws.onopen = () => { backoff = 500; conn.className = "pill ok"; conn.textContent = "connected"; };
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    conn.className = "pill bad"; conn.textContent = "bridge unreachable: retrying";
    setTimeout(connect, backoff); backoff = Math.min(10000, backoff * 2);
  };
}
setInterval(() => { for (const cam of state.cameras.values()) { drawTimeline(cam); drawFaces(cam); } }, 500);
connect();
