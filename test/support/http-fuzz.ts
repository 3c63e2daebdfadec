import { request, type IncomingHttpHeaders } from "node:http";
import fc from "fast-check";
import {
  deepJson,
  encodeJson,
  fieldPaths,
  hostileJson,
  hostileKey,
  hugeString,
  NASTY_STRINGS,
  pollutingEntries,
  removeAt,
  setAt,
  validValue,
  withEntries,
  wrongValue,
  type FieldHints,
  type JsonSchema,
} from "./json-fuzz.ts";

/*
 * HTTP requests for fuzzing the API from its OpenAPI document: the operations it declares, the
 * parts of a request built from their parameters and bodies (path segments, query strings,
 * headers, bodies), and a raw `node:http` sender that lets through what `fetch` would refuse or
 * normalise (percent sequences that are not UTF-8, chunked bodies, Latin-1 header bytes).
 */

export interface Parameter {
  in: "path" | "query" | "header";
  name: string;
  schema: JsonSchema;
  required: boolean;
}

/** One method on one path of the document, as the fuzzer needs it. */
export interface Operation {
  method: string;
  /** The document's template, e.g. `/v2/{ep}/status/{id}`. */
  path: string;
  params: Parameter[];
  body?: { schema: JsonSchema; required: boolean };
  /** Whose credential the route wants, from its security requirement. */
  auth: "admin" | "tenant" | "none";
}

const METHODS = ["get", "post", "put", "patch", "delete"];

export function operationsOf(doc: JsonSchema): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      const schemes = (op.security ?? []).flatMap((s: object) => Object.keys(s));
      const json = op.requestBody?.content?.["application/json"];
      ops.push({
        method: method.toUpperCase(),
        path,
        params: (op.parameters ?? []).map((p: any) => ({ in: p.in, name: p.name, schema: p.schema ?? {}, required: p.required === true })),
        ...(json && { body: { schema: json.schema ?? {}, required: op.requestBody.required === true } }),
        auth: schemes.includes("adminToken") ? "admin" : schemes.includes("apiKey") ? "tenant" : "none",
      });
    }
  }
  return ops;
}

/** Percent-encodes every byte outside RFC 3986's unreserved set (a lone surrogate goes as U+FFFD's bytes). */
export const pct = (s: string) => [...Buffer.from(s, "utf8")].map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`)).join("");

/** Decodes as Hono does: the whole, or else each run of escapes that is valid UTF-8 on its own. */
export function lenientDecode(s: string): string {
  const t = s.replace(/\+/g, " ");
  try {
    return decodeURIComponent(t);
  } catch {
    return t.replace(/(?:%[0-9A-Fa-f]{2})+/g, (m) => {
      try {
        return decodeURIComponent(m);
      } catch {
        return m;
      }
    });
  }
}

/** Already-encoded text for a path segment or a query value: NUL, UTF-8 that is not (a surrogate, a lone byte, an overlong), broken escapes, dots. */
export const RAW_SEQUENCES = ["%00", "a%00b", "%ED%A0%80", "%FF", "%C0%AF", "%E2%82", "%F0%9F%98", "%", "%zz", "%2", "%2F", "%2e%2e", "..", ".", "%25", "%20", "", "~", "a;b", "a,b", "a@b", "a:b", "+", "%u0000", "%%30%30"];

/** A path segment: one of the real ids most of the time (so the handler runs), else a hostile one. */
export function pathSegment(real: readonly string[]): fc.Arbitrary<string> {
  const fuzzed = fc.oneof(
    fc.constantFrom(...RAW_SEQUENCES),
    fc.constantFrom(...NASTY_STRINGS).map(pct),
    fc.string({ unit: "binary", minLength: 1, maxLength: 20 }).map(pct),
    fc.stringMatching(/^[\x21-\x7e]{1,24}$/).map(pct),
    fc.constantFrom(127, 128, 129, 512, 513).map((n) => "a".repeat(n)),
  );
  if (real.length === 0) return fuzzed;
  const mangled = fc.tuple(fc.constantFrom(...real), fc.constantFrom("%00", "%ED%A0%80", "%FF", "%20", "x", "%2F", "%09")).map(([id, tail]) => `${pct(id)}${tail}`);
  return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...real).map(pct) }, { weight: 1, arbitrary: mangled }, { weight: 3, arbitrary: fuzzed });
}

const MAX_QUERY_PART = 1500;
const text = (v: unknown) => (typeof v === "string" ? v : encodeJson(v));

/**
 * A query string for `op`: each declared parameter absent, valid, of a wrong type, raw or repeated;
 * plus keys nobody declared. `holdParams` caps parameters that make the API hold the request
 * (`wait`): they are always sent, never above their cap, so a run cannot hang on a long wait.
 */
export function queryString(doc: JsonSchema, op: Operation, hints: FieldHints, holdParams: Record<string, number>, fuzzed = true): fc.Arbitrary<string> {
  const declared = op.params.filter((p) => p.in === "query");
  const valid = (p: Parameter) => validValue(doc, p.schema, { hints }, p.name).map((v) => pct(text(v)));
  const values = (p: Parameter): fc.Arbitrary<string[]> => {
    if (!fuzzed) return fc.oneof(fc.constant<string[]>([]), valid(p).map((v) => [v]));
    return fc.oneof(
      { weight: 3, arbitrary: fc.constant<string[]>([]) },
      { weight: 4, arbitrary: valid(p).map((v) => [v]) },
      { weight: 2, arbitrary: wrongValue(p.schema).map((v) => [pct(text(v))]) },
      { weight: 1, arbitrary: fc.constantFrom(...RAW_SEQUENCES).map((v) => [v]) },
      { weight: 1, arbitrary: fc.array(valid(p), { minLength: 2, maxLength: 3 }) },
    );
  };
  const extraKey = fc.oneof(hostileKey().map(pct), fc.constantFrom(...RAW_SEQUENCES, "a[b]", "a[]", "wait2"));
  const extraValue = fc.oneof(fc.constantFrom(...RAW_SEQUENCES), hostileJson().map((v) => pct(text(v))));
  return fc
    .tuple(fc.tuple(...declared.map((p) => values(p).map((vs) => vs.map((v) => [pct(p.name), v] as [string, string])))), fc.array(fc.tuple(extraKey, extraValue), { maxLength: fuzzed ? 3 : 0 }), fc.boolean())
    .map(([declaredPairs, extra, keyOnly]) => {
      // Cut to stay inside Node's 16 KB of request line and headers (past it Node answers 431 itself);
      // a cut through an escape is one more malformed escape.
      let pairs = [...declaredPairs.flat(), ...extra].map(([k, v]) => [k.slice(0, MAX_QUERY_PART), v.slice(0, MAX_QUERY_PART)] as [string, string]);
      for (const [name, cap] of Object.entries(holdParams)) {
        if (!declared.some((p) => p.name === name)) continue;
        if (!pairs.some(([k]) => lenientDecode(k) === name)) pairs.push([name, String(cap)]);
        pairs = pairs.map(([k, v]) => {
          const n = Number(lenientDecode(v));
          return lenientDecode(k) === name && Number.isFinite(n) && n > cap ? [k, String(cap)] : [k, v];
        });
      }
      if (pairs.length === 0) return keyOnly ? "?" : "";
      return `?${pairs.map(([k, v]) => (keyOnly && v === "" ? k : `${k}=${v}`)).join("&")}`;
    });
}

/** A header value as a client sends UTF-8: its bytes, read as Latin-1; the bytes `node:http` refuses to send (CR, LF, NUL) dropped. */
export const headerSafe = (s: string) => Buffer.from(s, "utf8").toString("latin1").replace(/[^\t\x20-\x7e\x80-\xff]/g, "");

/** Values for a declared header (`idempotency-key`): valid, at its bounds, or hostile (`fuzzed`); else absent or valid. */
export function headerValue(doc: JsonSchema, p: Parameter, hints: FieldHints, fuzzed = true): fc.Arbitrary<string | undefined> {
  if (!fuzzed) return fc.option(validValue(doc, p.schema, { hints }, p.name).map((v) => headerSafe(text(v))), { nil: undefined });
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: validValue(doc, p.schema, { hints }, p.name).map(text) },
    { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS, "a b", " lead", "x".repeat(255), "x".repeat(256), "x".repeat(4000), "\u00e9t\u00e9", "\u{1F600}") },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 64 }) },
  ).map((v) => (v === undefined ? undefined : headerSafe(v)));
}

export const contentType = (): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constant("application/json") },
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=utf-16", "application/json; charset=latin1", "text/plain", "text/json",
        "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json-patch+json", "application/vnd.api+json", "", "json",
        "application/json, text/plain", "*/*", "application/octet-stream", "application/jsonx", "application/json\u00ff",
      ).map(headerSafe),
    },
  );

/** Headers a client or proxy adds that the API ignores, or should. */
export const extraHeaders = (): fc.Arbitrary<[string, string][]> =>
  fc.subarray<[string, string]>(
    [
      ["accept", "text/event-stream"], ["accept-encoding", "gzip, br"], ["content-encoding", "gzip"], ["x-forwarded-for", "1.2.3.4, ::1"], ["cookie", "a=b; __proto__=x"],
      ["origin", "null"], ["x-http-method-override", "DELETE"], ["x-request-id", headerSafe("\u00ff\u0000")], ["if-none-match", "*"], ["range", "bytes=0-1"], ["connection", "close"],
    ],
    { maxLength: 3 },
  );

/** A request body: what `kind` it is (for the report) and its bytes (`undefined`: none). */
export interface FuzzBody {
  kind: string;
  bytes?: Buffer;
}

const json = (kind: string) => (v: unknown): FuzzBody => ({ kind, bytes: Buffer.from(encodeJson(v), "utf8") });

const RAW_TEXTS = [
  "", " ", "{", "[", "}", "nul", "tru", "{'a':1}", '{"a":1,}', '{"a":}', "\uFEFF{}", "/*c*/{}", "a=1&b=2", "<x/>", "undefined", "NaN", "-", '"', '{"a":1}{"b":2}',
  '{"a":1,"a":2}', '{"input":1}\u0000', "0".repeat(400), "[".repeat(100_000), "null", "[]", "1", '"s"', "true",
];

/** Bodies that are not JSON, or not UTF-8, or JSON in another encoding. */
export function rawBody(validText: fc.Arbitrary<string>): fc.Arbitrary<FuzzBody> {
  return fc.oneof(
    fc.constantFrom(...RAW_TEXTS).map((t) => ({ kind: "raw text", bytes: Buffer.from(t, "utf8") })),
    fc.string({ unit: "binary", maxLength: 200 }).map((t) => ({ kind: "raw text", bytes: Buffer.from(t, "utf8") })),
    fc.uint8Array({ maxLength: 200 }).map((b) => ({ kind: "raw bytes", bytes: Buffer.from(b) })),
    fc
      .constantFrom([0xff, 0xfe], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xef, 0xbb, 0xbf, 0x7b, 0x7d], [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])
      .map((b) => ({ kind: "invalid UTF-8", bytes: Buffer.from(b) })),
    fc.tuple(validText, fc.nat()).map(([t, n]) => ({ kind: "truncated JSON", bytes: Buffer.from(t.slice(0, n % Math.max(1, t.length)), "utf8") })),
    validText.map((t) => ({ kind: "UTF-16 JSON", bytes: Buffer.from(t, "utf16le") })),
  );
}

/** A body for `op`: valid, one declared field of a wrong type, a required field missing, extra keys, deep, huge, no JSON at all. */
export function requestBody(doc: JsonSchema, op: Operation, hints: FieldHints): fc.Arbitrary<FuzzBody> {
  const schema = op.body?.schema ?? { type: "object" };
  const valid = validValue(doc, schema, { hints });
  const fields = fieldPaths(doc, schema);
  const anyField = fields.length > 0 ? fc.constantFrom(...fields) : fc.constant({ path: ["x"], schema: {}, required: false });
  const required = fields.filter((f) => f.required);
  const kinds: fc.WeightedArbitrary<FuzzBody>[] = [
    { weight: 4, arbitrary: valid.map(json("valid")) },
    { weight: 6, arbitrary: fc.tuple(valid, anyField.chain((f) => wrongValue(f.schema).map((w) => [f.path, w] as const))).map(([v, [path, w]]) => json(`wrong ${path.join(".")}`)(setAt(v, path, w))) },
    { weight: 2, arbitrary: fc.tuple(valid, fc.array(fc.tuple(hostileKey(), hostileJson()), { maxLength: 3 }), pollutingEntries()).map(([v, extra, proto]) => json("extra keys")(withEntries(v, [...extra, ...proto]))) },
    { weight: 2, arbitrary: hostileJson().map(json("any JSON")) },
    { weight: 1, arbitrary: fc.tuple(valid, anyField, deepJson(), fc.boolean()).map(([v, f, deep, whole]) => (whole ? json("deep body")(deep) : json(`deep ${f.path.join(".")}`)(setAt(v, f.path, deep)))) },
    { weight: 1, arbitrary: fc.tuple(valid, anyField, hugeString()).map(([v, f, s]) => json(`huge ${f.path.join(".")}`)(setAt(v, f.path, s))) },
    { weight: 2, arbitrary: rawBody(valid.map(encodeJson)) },
    { weight: 1, arbitrary: fc.constant({ kind: "no body" }) },
  ];
  if (required.length > 0) kinds.push({ weight: 1, arbitrary: fc.tuple(valid, fc.constantFrom(...required)).map(([v, f]) => json(`without ${f.path.join(".")}`)(removeAt(v, f.path))) });
  if (op.body) return fc.oneof(...kinds);
  // A route without a body gets one now and then: it must ignore it.
  return fc.oneof({ weight: 6, arbitrary: fc.constant({ kind: "no body" }) }, { weight: 1, arbitrary: hostileJson().map(json("unexpected JSON")) }, { weight: 1, arbitrary: rawBody(fc.constant("{}")) });
}

/** A body the route's schema accepts (none for a route without one). */
export function validBody(doc: JsonSchema, op: Operation, hints: FieldHints): fc.Arbitrary<FuzzBody> {
  return op.body ? validValue(doc, op.body.schema, { hints }).map(json("valid")) : fc.constant({ kind: "no body" });
}

/** One request the fuzzer sends; prints as a reproduction (fast-check shows it for a counterexample). */
export class Probe {
  constructor(
    readonly method: string,
    /** Path and query, encoded as sent. */
    readonly target: string,
    readonly headers: Readonly<Record<string, string>>,
    readonly body: FuzzBody,
    /** Sent with Transfer-Encoding: chunked instead of Content-Length. */
    readonly chunked: boolean,
  ) {}

  [fc.toStringMethod](): string {
    return this.repro();
  }

  repro(): string {
    const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
    const headers = Object.entries(this.headers).map(([k, v]) => `${k}: ${JSON.stringify(clip(v, 80))}`).join("; ");
    const body = this.body.bytes === undefined ? "(none)" : `${this.body.kind}, ${this.body.bytes.length} bytes${this.chunked ? " chunked" : ""}: ${JSON.stringify(clip(this.body.bytes.toString("utf8"), 300))}`;
    return `${this.method} ${clip(this.target, 300)}\n    headers: ${headers || "(none)"}\n    body: ${body}`;
  }
}

export type Outcome =
  | { kind: "answer"; status: number; headers: IncomingHttpHeaders; text: string; ms: number }
  | { kind: "held"; ms: number }
  | { kind: "transport"; error: string; ms: number };


/**
 * Sends `probe` and reads the answer (an SSE answer only to its status). A request still unanswered
 * after `holdMs` is abandoned: the socket is destroyed, as a client that gives up does.
 */
export function send(origin: { host: string; port: number }, probe: Probe, holdMs: number): Promise<Outcome> {
  const started = Date.now();
  const ms = () => Date.now() - started;
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    const headers: Record<string, string> = { ...probe.headers };
    // Said outright: for GET and DELETE node:http would otherwise write the body unframed.
    if (probe.body.bytes !== undefined) headers[probe.chunked ? "transfer-encoding" : "content-length"] = probe.chunked ? "chunked" : String(probe.body.bytes.length);
    // A connection per request: @hono/node-server closes a kept-alive socket 500 ms after a body it did
    // not read, which would fail the next request on it; and no request inherits another's state.
    const req = request({ host: origin.host, port: origin.port, method: probe.method, path: probe.target, headers, agent: false }, (res) => {
      if (String(res.headers["content-type"] ?? "").startsWith("text/event-stream")) {
        done({ kind: "answer", status: res.statusCode ?? 0, headers: res.headers, text: "", ms: ms() });
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => done({ kind: "answer", status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8"), ms: ms() }));
      res.on("error", (err) => done({ kind: "transport", error: String(err), ms: ms() }));
    });
    const timer = setTimeout(() => {
      done({ kind: "held", ms: ms() });
      req.destroy();
    }, holdMs);
    req.on("error", (err) => done({ kind: "transport", error: String(err), ms: ms() }));
    const bytes = probe.body.bytes;
    if (bytes === undefined) req.end();
    else if (probe.chunked && bytes.length > 1) {
      req.write(bytes.subarray(0, bytes.length >> 1));
      req.end(bytes.subarray(bytes.length >> 1));
    } else req.end(bytes);
  });
}

