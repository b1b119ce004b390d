#!/usr/bin/env node
// Conformance: decode every golden vector (docs/vectors/*.json) and compare with its expected
// header and arrays, or its expected drop reason. Prints "N passed, N failed"; exit 1 on a failure.
//   node vectors.mjs ../../docs/vectors
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { decode, ProtocolError, sha256, toJSON, values } from "./mfvan.mjs";

const BIG = 2n ** 53n - 1n;
// The vector files write integers beyond 2^53 as decimal strings; ours are BigInt: compare as text.
function normal(v) {
  if (typeof v === "bigint") return (v > BIG || v < -BIG) ? v.toString() : Number(v);
  if (Array.isArray(v)) return v.map(normal);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normal(x)]));
  return v;
}
const canon = (v) => toJSON(sortKeys(v));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

const dir = process.argv[2] ?? new URL("../../docs/vectors", import.meta.url).pathname;
let passed = 0, failed = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  const v = JSON.parse(readFileSync(join(dir, file), "utf8"));
  const frames = v.frames_hex.map((h) => Buffer.from(h, "hex"));
  let problem = null;
  try {
    const { header, arrays } = decode(frames, { hasTopic: v.has_topic });
    if (v.expect.error) problem = `decoded, expected a drop for "${v.expect.error}"`;
    else if (canon(normal(header)) !== canon(v.expect.header)) problem = `header ${canon(normal(header))} != ${canon(v.expect.header)}`;
    else if (arrays.length !== v.expect.arrays.length) problem = `${arrays.length} arrays`;
    else {
      arrays.forEach((a, i) => {
        const w = v.expect.arrays[i];
        if (a.dtype !== w.dtype || a.shape.join() !== w.shape.join()) problem = `array ${i}: ${a.dtype} ${a.shape}`;
        else if (sha256(a.bytes) !== w.sha256) problem = `array ${i}: sha256 differs`;
        else if (values(a).some((x, j) => x !== w.values[j])) problem = `array ${i}: values differ`;
      });
    }
  } catch (e) {
    if (!(e instanceof ProtocolError)) problem = `threw ${e.stack}`;
    else if (e.reason !== v.expect.error) problem = `dropped for "${e.reason}" (${e.message}), expected ${v.expect.error ?? "a message"}`;
  }
  if (problem) { failed++; console.log(`FAIL ${file}: ${problem}`); } else { passed++; console.log(`ok   ${file}`); }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);
