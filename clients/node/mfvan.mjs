// mfvan wire protocol (MFV2) for Node.js, written from docs/protocol.md and
// docs/protocol.schema.json alone: it imports nothing of the Python project.
//
//   import { subscribe } from "./mfvan.mjs";
//   for await (const ev of subscribe({ endpoint: "tcp://127.0.0.1:5556" })) {
//     if (ev.header.type === "result") console.log(ev.header.camera, ev.header.label);
//   }
//
// decode() applies the same rules, in the same order, as the reference decoder: a message that
// breaks one throws ProtocolError whose `reason` is the drop reason of docs/protocol.md.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Decoder } from "@msgpack/msgpack";

export const MAGIC = "MFV2";
export const MAX_HEADER_BYTES = 64 * 1024;
export const MAX_ARRAY_BYTES = 16 * 1024 * 1024;
export const MAX_FRAMES = 8;
export const MAX_LABELS = 64;
export const ITEMSIZE = { uint8: 1, float16: 2, float32: 4 };
const TOPIC_OF = { result: "label/", macro: "macro/", status: "status/", hb: "hb/" };

export const DEFAULT_SCHEMA = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "protocol.schema.json");

export class ProtocolError extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}

// *_ns values exceed 2^53: without useBigInt64 a JS decoder silently rounds them.
const msgpack = new Decoder({ useBigInt64: true });

const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
const codepoints = (s) => [...s].length;

// A small interpreter for the JSON Schema subset msgspec emits: type, enum, properties,
// required, additionalProperties, items, anyOf, $ref. Returns an error string or null, and fills
// in the defaults of optional fields.
function check(schema, value, defs, path) {
  if (schema.$ref) return check(defs[schema.$ref.split("/").pop()], value, defs, path);
  if (schema.anyOf) {
    const errs = [];
    for (const s of schema.anyOf) {
      const e = check(s, value, defs, path);
      if (e === null) return null;
      errs.push(e);
    }
    return errs.join(" | ");
  }
  if (schema.enum && !schema.enum.includes(value)) return `${path}: ${String(value)} not in ${schema.enum}`;
  switch (schema.type) {
    case undefined: return null;
    case "null": return value === null ? null : `${path}: expected null`;
    case "string": return typeof value === "string" ? null : `${path}: expected a string`;
    case "integer": return isInt(value) ? null : `${path}: expected an integer`;
    case "number": return typeof value === "number" || typeof value === "bigint" ? null : `${path}: expected a number`;
    case "boolean": return typeof value === "boolean" ? null : `${path}: expected a boolean`;
    case "array": {
      if (!Array.isArray(value)) return `${path}: expected an array`;
      for (let i = 0; i < value.length; i++) {
        const e = schema.items ? check(schema.items, value[i], defs, `${path}[${i}]`) : null;
        if (e) return e;
      }
      return null;
    }
    case "object": {
      if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) {
        return `${path}: expected an object`;
      }
      for (const k of schema.required || []) if (!(k in value)) return `${path}: missing field ${k}`;
      const props = schema.properties || {};
      for (const [k, v] of Object.entries(value)) {
        const s = props[k] ?? schema.additionalProperties;
        if (s === false || s === undefined && schema.additionalProperties === false) return `${path}: unknown field ${k}`;
        if (s && s !== true) {
          const e = check(s, v, defs, `${path}.${k}`);
          if (e) return e;
        }
      }
      for (const [k, s] of Object.entries(props)) {
        if (!(k in value) && "default" in s) value[k] = structuredClone(s.default);
      }
      return null;
    }
    default: return `${path}: unsupported schema type ${schema.type}`;
  }
}

let SCHEMA = null;
export function loadSchema(path = DEFAULT_SCHEMA) {
  SCHEMA = JSON.parse(readFileSync(path, "utf8"));
  return SCHEMA;
}

function headerOf(raw) {
  let h;
  try {
    h = msgpack.decode(raw);
  } catch (e) {
    throw new ProtocolError("header", `not msgpack: ${e.message}`.slice(0, 200));
  }
  const schema = SCHEMA ?? loadSchema();
  const mapping = schema.discriminator.mapping;
  if (h === null || typeof h !== "object" || typeof h.type !== "string" || !Object.hasOwn(mapping, h.type)) throw new ProtocolError("header", "unknown type");
  const err = check({ $ref: mapping[h.type] }, h, schema.$defs, h.type);
  if (err) throw new ProtocolError("header", err.slice(0, 200));
  return h;
}

function validate(h) {
  const order = (o, a, f) => BigInt(o) <= BigInt(a) && BigInt(a) <= BigInt(f);
  if (h.type === "pair") {
    if (!order(h.onset_index, h.apex_index, h.offset_index)) throw new ProtocolError("schema", "onset <= apex <= offset");
    const s = h.crop.shape;
    if (h.crop.dtype !== "uint8" || s.length !== 3 || Number(s[2]) !== 3) throw new ProtocolError("schema", "crops are (H, W, 3) uint8");
  }
  if (h.type === "result") {
    if (!order(h.onset_index, h.apex_index, h.offset_index)) throw new ProtocolError("schema", "onset <= apex <= offset");
    if (Object.keys(h.probs).length > MAX_LABELS) throw new ProtocolError("schema", "too many labels");
    if ((h.heatmap === null) !== (h.heatmap_names.length === 0)) throw new ProtocolError("schema", "heatmap and heatmap_names go together");
    if (h.heatmap !== null && Number(h.heatmap.shape[0]) !== h.heatmap_names.length) throw new ProtocolError("schema", "one name per slice");
    if (h.apex_crop !== null && !(h.apex_crop.dtype === "uint8" && h.apex_crop.shape.length === 3)) throw new ProtocolError("schema", "apex_crop is (H, W, 3) uint8");
  }
  if (h.type === "status" && h.model !== null) {
    if (h.model.labels.length > MAX_LABELS || h.model.heatmap_names.length > MAX_FRAMES) throw new ProtocolError("schema", "model info too long");
  }
  for (const name of ["camera", "component"]) {
    const v = h[name];
    if (v !== undefined && (v.length === 0 || v.includes("/") || codepoints(v) > 64)) throw new ProtocolError("schema", `${name} must be 1..64 chars without '/'`);
  }
}

function arrayOf(buf, spec) {
  if (!(spec.dtype in ITEMSIZE)) throw new ProtocolError("array", `dtype ${spec.dtype}`);
  const shape = spec.shape.map(Number);
  if (shape.length < 1 || shape.length > 4) throw new ProtocolError("array", `ndim ${shape.length}`);
  if (shape.some((d) => d <= 0 || d > 4096)) throw new ProtocolError("array", `shape ${shape}`);
  const nbytes = shape.reduce((a, b) => a * b, 1) * ITEMSIZE[spec.dtype];
  if (nbytes > MAX_ARRAY_BYTES) throw new ProtocolError("size", `array of ${nbytes} bytes`);
  if (buf.length !== nbytes) throw new ProtocolError("array", `${buf.length} bytes for ${shape} ${spec.dtype}`);
  // arrays are C-order and little-endian; float16 NaN/Inf have all five exponent bits set
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (spec.dtype === "float16") {
    for (let i = 0; i < nbytes; i += 2) if ((dv.getUint16(i, true) & 0x7c00) === 0x7c00) throw new ProtocolError("array", "non-finite values");
  } else if (spec.dtype === "float32") {
    for (let i = 0; i < nbytes; i += 4) if (!Number.isFinite(dv.getFloat32(i, true))) throw new ProtocolError("array", "non-finite values");
  }
  return { dtype: spec.dtype, shape, bytes: buf };
}

// frames: Buffer[] as received. Returns { topic, header, arrays: [{dtype, shape, bytes}] }.
export function decode(frames, { hasTopic = false } = {}) {
  const head = hasTopic ? 1 : 0;
  if (frames.length < head + 2 || frames.length > head + 2 + MAX_FRAMES) throw new ProtocolError("frames", `${frames.length} frames`);
  let topic = null;
  if (hasTopic) {
    topic = Buffer.from(frames[0]).toString("latin1");
    if (frames[0].length > 256 || !topic.endsWith("/")) throw new ProtocolError("topic", "bad topic");
    topic = Buffer.from(frames[0]).toString("utf8");
  }
  if (Buffer.from(frames[head]).toString("latin1") !== MAGIC) throw new ProtocolError("version", "not MFV2");
  if (frames[head + 1].length > MAX_HEADER_BYTES) throw new ProtocolError("size", "header over 64 KiB");
  const header = headerOf(frames[head + 1]);
  validate(header);
  const specs = header.type === "pair" ? [header.crop, header.crop]
    : header.type === "result" ? [header.heatmap, header.apex_crop].filter((s) => s !== null) : [];
  const payload = frames.slice(head + 2);
  if (payload.length !== specs.length) throw new ProtocolError("frames", `${header.type} takes ${specs.length} arrays`);
  const arrays = payload.map((f, i) => arrayOf(Buffer.from(f.buffer, f.byteOffset, f.byteLength), specs[i]));
  if (hasTopic && !(TOPIC_OF[header.type] && topic.startsWith(TOPIC_OF[header.type]))) throw new ProtocolError("topic", `${header.type} on ${topic}`);
  return { topic, header, arrays };
}

// Values of an array as JS numbers (float16 widened exactly), for display or checks.
export function values(arr) {
  const dv = new DataView(arr.bytes.buffer, arr.bytes.byteOffset, arr.bytes.byteLength);
  const out = [];
  if (arr.dtype === "uint8") for (let i = 0; i < arr.bytes.length; i++) out.push(arr.bytes[i]);
  if (arr.dtype === "float32") for (let i = 0; i < arr.bytes.length; i += 4) out.push(dv.getFloat32(i, true));
  if (arr.dtype === "float16") {
    for (let i = 0; i < arr.bytes.length; i += 2) {
      const h = dv.getUint16(i, true), s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
      out.push(e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15));
    }
  }
  return out;
}

export const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

// JSON with BigInt written as exact integers (JSON.stringify refuses BigInt).
export function toJSON(v) {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `[${v.map(toJSON).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJSON(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

// CURVE key files are ZeroMQ certificates (what `mfvan-keys` and pyzmq write):
//   curve
//       public-key = "<40 Z85 chars>"
//       secret-key = "<40 Z85 chars>"      (only in NAME.key_secret)
export function loadCertificate(path) {
  const text = readFileSync(path, "utf8");
  const get = (k) => (text.match(new RegExp(`^\\s*${k}\\s*=\\s*"([^"]{40})"`, "m")) || [])[1] ?? null;
  return { public: get("public-key"), secret: get("secret-key") };
}

function streamOf(h) {
  if (h.type === "result" || h.type === "macro") return `${h.type}/${h.camera}`;
  if (h.type === "hb") return `hb/${h.component}`;
  return null;
}

// An async iterator of validated events; bad messages are counted in `counts.invalid[reason]`.
export async function* subscribe({ endpoint, cameras = [], kinds = ["label/", "macro/", "status/"],
  serverKey = null, clientKey = null, timeoutMs = -1, counts = { invalid: {}, received: 0 } }) {
  const zmq = await import("zeromq");
  const sock = new zmq.Subscriber({ receiveHighWaterMark: 10000, linger: 0, receiveTimeout: timeoutMs });
  if (serverKey) {
    const server = loadCertificate(serverKey), client = loadCertificate(clientKey);
    if (!server.public || !client.secret) throw new Error("CURVE needs the server's .key and this client's .key_secret");
    sock.curveServerKey = server.public;
    sock.curvePublicKey = client.public;
    sock.curveSecretKey = client.secret;
  }
  sock.connect(endpoint);
  // one subscription per kind, or per camera (`label/cam1/`: the trailing slash keeps cam10 out)
  for (const kind of kinds) {
    if (cameras.length && (kind === "label/" || kind === "macro/")) for (const c of cameras) sock.subscribe(`${kind}${c}/`);
    else sock.subscribe(kind);
  }
  const highest = new Map();
  try {
    while (true) {
      let frames;
      try {
        frames = await sock.receive();
      } catch (e) {
        if (e.code === "EAGAIN") return; // receiveTimeout passed without a message
        throw e;
      }
      const receivedNs = BigInt(Date.now()) * 1000000n;
      let ev;
      try {
        ev = decode(frames, { hasTopic: true });
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        counts.invalid[e.reason] = (counts.invalid[e.reason] || 0) + 1;
        continue;
      }
      counts.received += 1;
      const stream = streamOf(ev.header);
      ev.gap = 0;
      if (stream !== null) {
        const seq = BigInt(ev.header.seq), high = highest.get(stream);
        if (high !== undefined && seq > high + 1n) ev.gap = Number(seq - high - 1n);
        if (high === undefined || seq > high) highest.set(stream, seq);
      }
      ev.receivedNs = receivedNs;
      yield ev;
    }
  } finally {
    sock.close();
  }
}
