#!/usr/bin/env node
// mfvan-sub for Node.js: print the events of an mfvan PUB endpoint, one JSON object a line.
//   node sub.mjs --endpoint tcp://127.0.0.1:5556 [--camera cam0] [--status] [--heartbeats]
//                [--count N] [--timeout S] [--server-key server.key --client-key me.key_secret]
// Each line: the header's fields (exact 64-bit integers), plus topic, received_ns, gap,
// latency_ms (results: receive time - apex capture time) and the sha256 of each array frame.
import { parseArgs } from "node:util";
import { sha256, subscribe, toJSON } from "./mfvan.mjs";

const { values: a } = parseArgs({
  options: {
    endpoint: { type: "string", default: "tcp://127.0.0.1:5556" },
    camera: { type: "string", multiple: true, default: [] },
    status: { type: "boolean", default: false },
    heartbeats: { type: "boolean", default: false },
    count: { type: "string", default: "0" },
    timeout: { type: "string", default: "0" },
    "server-key": { type: "string" },
    "client-key": { type: "string" },
  },
});
const count = Number(a.count), timeout = Number(a.timeout);
if (!Number.isInteger(count) || count < 0 || !(timeout >= 0)) {
  console.error("sub.mjs: --count and --timeout must be >= 0");
  process.exit(2);
}
const kinds = ["label/", "macro/", ...(a.status ? ["status/"] : []), ...(a.heartbeats ? ["hb/"] : [])];
const counts = { invalid: {}, received: 0 };
let events = 0, code = 0;
const iter = subscribe({ endpoint: a.endpoint, cameras: a.camera, kinds, serverKey: a["server-key"] ?? null,
  clientKey: a["client-key"] ?? null, timeoutMs: timeout ? Math.round(timeout * 1000) : -1, counts });
const summary = () => console.error(`sub.mjs: ${events} events, ${counts.received} messages, invalid ${JSON.stringify(counts.invalid)}`);
// stdout is synchronous for files and pipes on Linux: nothing printed is lost by exiting here
process.on("SIGTERM", () => { summary(); process.exit(0); });
for await (const ev of iter) {
  const h = ev.header, out = { topic: ev.topic, received_ns: ev.receivedNs, gap: ev.gap, ...h };
  if (h.type === "result") {
    out.latency_ms = Number(ev.receivedNs - BigInt(h.apex_ts_ns)) / 1e6;
    const names = [h.heatmap && "heatmap", h.apex_crop && "apex_crop"].filter(Boolean);
    ev.arrays.forEach((arr, i) => { out[`${names[i]}_sha256`] = sha256(arr.bytes); });
  }
  console.log(toJSON(out));
  if (h.type === "result" || h.type === "macro") {
    events++;
    if (count && events >= count) break;
  }
}
if (timeout && !(count && events >= count)) code = 1; // like mfvan-sub: the timeout passed first
summary();
process.exit(code);
