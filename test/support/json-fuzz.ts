import fc from "fast-check";

/*
 * Hostile JSON for fuzzing the API: values shaped by an OpenAPI 3.1 schema (so most requests get
 * past validation into the handlers), mutations of them (a wrong type in one declared field, a
 * missing required field, extra and prototype-named keys), and bodies no schema expects (deep
 * nesting built as text, ~1 MB strings, NUL and lone surrogates, numbers JSON.stringify cannot write).
 */

export type JsonSchema = Record<string, any>;

/** A JSON text fragment written as is: numbers like `-0` or `1e400`, or nesting too deep to build as a value. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** JSON text of a value that may hold `RawJson` fragments and own `__proto__` keys (plain objects from `Object.fromEntries`). */
export function encodeJson(v: unknown): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(encodeJson).join(",")}]`;
  if (v !== null && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${encodeJson(x)}`).join(",")}}`;
  return JSON.stringify(v) ?? "null";
}

/** Sets an own property even when it is named `__proto__` (plain assignment would change the prototype). */
const own = <T extends object>(o: T, key: string, value: unknown): T => Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof RawJson);

/** `value` with `replacement` at `path`, building objects where the path leads through something else. */
export function setAt(value: unknown, path: readonly string[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const [head, ...rest] = path as [string, ...string[]];
  if (head === "*") {
    const arr = Array.isArray(value) && value.length > 0 ? [...value] : [{}];
    arr[0] = setAt(arr[0], rest, replacement);
    return arr;
  }
  const base = isPlainObject(value) ? { ...value } : {};
  return own(base, head, setAt(base[head], rest, replacement));
}

/** Whether `value` has something at `path` (`*`: the first item of an array). */
export function hasPath(value: unknown, path: readonly string[]): boolean {
  let v = value;
  for (const key of path) {
    if (key === "*") {
      if (!Array.isArray(v) || v.length === 0) return false;
      v = v[0];
    } else {
      if (!isPlainObject(v) || !Object.prototype.hasOwnProperty.call(v, key)) return false;
      v = v[key];
    }
  }
  return true;
}

/** `value` without the key at `path` (unchanged where the path does not exist). */
export function removeAt(value: unknown, path: readonly string[]): unknown {
  if (path.length === 0 || !isPlainObject(value) && !Array.isArray(value)) return value;
  const [head, ...rest] = path as [string, ...string[]];
  if (head === "*") return Array.isArray(value) && value.length > 0 ? [removeAt(value[0], rest), ...value.slice(1)] : value;
  if (!isPlainObject(value) || !(head in value)) return value;
  if (rest.length > 0) return own({ ...value }, head, removeAt(value[head], rest));
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== head));
}

/** Numbers as JSON text that no JS number round-trips to. */
const RAW_NUMBERS = ["-0", "1e308", "-1e308", "1e309", "-1e400", "1e-400", "5e-324", "0.0", "1E2", "9007199254740993", "123456789012345678901234567890", "-9223372036854775809", "0.1e1"];
/** Strings that have broken parsers, databases and regexes before. */
export const NASTY_STRINGS = [
  "", " ", "\t", "\u0000", "a\u0000b", "\ud800", "x\udfff", "\udc00\ud800", "\ud83d\ude00", "\uFEFF", "\u202e", "NaN", "Infinity", "-0", "1e308", "null", "true", "0x10",
  "%00", "%ED%A0%80", "%FF", "../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "C:\\x", "' OR 1=1 --", "\"; drop table x; --", "${jndi:ldap://x}", "<script>", "{{7*7}}",
  "__proto__", "constructor", "toString", "hasOwnProperty", "\\", "\\u0000", "é", "\u00ff", "a".repeat(129), "a".repeat(192), "a".repeat(256), "a".repeat(513), "a".repeat(4097),
];
const PROTO_KEYS = ["__proto__", "constructor", "prototype", "toString", "valueOf", "hasOwnProperty", "then", "__defineGetter__"];

/** A string of about `bytes` bytes of JSON text, of one of a few characters that are costly to carry. */
export const hugeString = (): fc.Arbitrary<string> =>
  fc.constantFrom(
    () => "x".repeat(1 << 20),
    () => "é".repeat(1 << 19),
    () => "\u0000".repeat(170_000), // 6 bytes each as JSON text
    () => "\ud800".repeat(170_000),
    () => "a\"\\".repeat(200_000),
  ).map((make) => make());

/** Nesting to a depth chosen around the API's limit (64) and far past it, as text (a JS value that deep would blow the stack elsewhere). */
export const deepJson = (): fc.Arbitrary<RawJson> =>
  fc
    .tuple(fc.oneof(fc.constantFrom(63, 64, 65, 66), fc.integer({ min: 1, max: 200 }), fc.integer({ min: 200, max: 5000 })), fc.constantFrom("array", "object", "mixed"))
    .map(([n, shape]) => {
      if (shape === "array") return new RawJson(`${"[".repeat(n)}${"]".repeat(n)}`);
      if (shape === "object") return new RawJson(`${'{"a":'.repeat(n)}1${"}".repeat(n)}`);
      return new RawJson(`${'[{"a":'.repeat(n)}null${"}]".repeat(n)}`);
    });

/** Any JSON scalar, leaning on the nasty ones. */
export const hostileScalar = (): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
    { weight: 2, arbitrary: fc.constantFrom(...RAW_NUMBERS).map((t) => new RawJson(t)) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, -1, 1, 2 ** 31, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, 0.5)) },
    { weight: 1, arbitrary: fc.constantFrom(null, true, false) },
  );

/** A key for an object no schema declares: random, empty, NUL-bearing or named after a prototype member. */
export const hostileKey = (): fc.Arbitrary<string> => fc.oneof(fc.constantFrom(...PROTO_KEYS, "", "\u0000", "\ud800", "a.b", "$where"), fc.string({ maxLength: 12 }), fc.string({ unit: "binary", maxLength: 12 }));

/** Any JSON value a few levels deep, objects with prototype-named keys included. */
export const hostileJson = (): fc.Arbitrary<unknown> =>
  fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      hostileScalar(),
      fc.array(tie("v"), { maxLength: 4 }),
      fc.array(fc.tuple(hostileKey(), tie("v")), { maxLength: 4 }).map((entries) => entries.reduce((o, [k, x]) => own(o, k, x), {} as object)),
    ),
  })).v;

/** A value of a type `schema` does not take, or one just outside its bounds. */
export function wrongValue(schema: JsonSchema): fc.Arbitrary<unknown> {
  const edges: unknown[] = [];
  if (typeof schema.minimum === "number") edges.push(schema.minimum - 1, schema.minimum - 0.5);
  if (typeof schema.maximum === "number") edges.push(schema.maximum + 1, new RawJson(`${schema.maximum}.5`));
  if (typeof schema.maxLength === "number") edges.push("x".repeat(schema.maxLength + 1));
  if (typeof schema.maxItems === "number") edges.push(Array.from({ length: schema.maxItems + 1 }, () => "x"));
  if (schema.minLength === 1) edges.push("");
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom<unknown>(null, true, 0, -1, 1.5, "x", "", [], {}, "NaN", [null], { "": null }, ...edges) },
    { weight: 4, arbitrary: hostileScalar() },
    { weight: 2, arbitrary: hostileJson() },
    { weight: 1, arbitrary: deepJson() },
  );
}

/** Resolves a `$ref` into the document's components. */
export function deref(doc: JsonSchema, schema: JsonSchema): JsonSchema {
  let s = schema;
  for (let i = 0; i < 16 && typeof s?.$ref === "string"; i++) {
    const name = (s.$ref as string).replace("#/components/schemas/", "");
    s = doc.components?.schemas?.[name] ?? {};
  }
  return s ?? {};
}

/** Realistic values by field name (a handler module that exists, a model URL the policy accepts), so valid-looking requests reach the handlers. */
export type FieldHints = Record<string, readonly unknown[]>;

export interface ValueOptions {
  hints?: FieldHints;
  /** Every optional property present, not a random few: a base on which each field can be mutated. */
  allFields?: boolean;
}

const INT32 = 2 ** 31 - 1;
const clampInt = (n: number) => Math.max(-INT32, Math.min(INT32, n));

function validString(s: JsonSchema): fc.Arbitrary<string> {
  const min = s.minLength ?? 0;
  const max = Math.min(s.maxLength ?? 40, 40);
  if (s.format === "date-time") return fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString());
  if (s.format === "uri") return fc.webUrl();
  if (typeof s.pattern === "string") {
    const re = new RegExp(s.pattern);
    return fc.stringMatching(re).filter((x) => x.length >= min && x.length <= (s.maxLength ?? Infinity));
  }
  return fc.string({ minLength: min, maxLength: Math.max(min, max) });
}

/** Values `schema` accepts (or nearly: refinements beyond the schema are left to chance), with `hints` for fields by name. */
export function validValue(doc: JsonSchema, schema: JsonSchema, opts: ValueOptions = {}, field = "", depth = 0): fc.Arbitrary<unknown> {
  const s = deref(doc, schema);
  const hinted = opts.hints?.[field];
  const generated = validValueOf(doc, s, opts, depth);
  return hinted && hinted.length > 0 ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...hinted) }, { weight: 1, arbitrary: generated }) : generated;
}

function validValueOf(doc: JsonSchema, s: JsonSchema, opts: ValueOptions, depth: number): fc.Arbitrary<unknown> {
  if (depth > 6) return fc.constant(null);
  const branches = s.oneOf ?? s.anyOf;
  if (Array.isArray(branches) && branches.length > 0) return fc.oneof(...branches.map((b: JsonSchema) => validValue(doc, b, opts, "", depth + 1)));
  if (Array.isArray(s.allOf) && s.allOf.length > 0) return validValue(doc, s.allOf[0], opts, "", depth + 1);
  if (Array.isArray(s.enum) && s.enum.length > 0) return fc.constantFrom(...s.enum);
  if ("const" in s) return fc.constant(s.const);
  const types: string[] = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (types.length === 0) return s.properties ? validValueOf(doc, { ...s, type: "object" }, opts, depth) : hostileJson();
  if (types.length > 1) return fc.oneof(...types.map((t) => validValueOf(doc, { ...s, type: t }, opts, depth)));
  switch (types[0]) {
    case "null":
      return fc.constant(null);
    case "boolean":
      return fc.boolean();
    case "integer":
    case "number": {
      const min = typeof s.minimum === "number" ? s.minimum : -1e6;
      const max = typeof s.maximum === "number" ? s.maximum : 1e6;
      const inner = fc.integer({ min: clampInt(Math.ceil(min)), max: clampInt(Math.floor(max)) });
      return fc.oneof(fc.constantFrom(min, max), inner, ...(types[0] === "number" ? [fc.double({ min, max, noNaN: true })] : []));
    }
    case "string":
      return validString(s);
    case "array":
      return fc.array(validValue(doc, s.items ?? {}, opts, "", depth + 1), { minLength: s.minItems ?? 0, maxLength: Math.max(s.minItems ?? 0, Math.min(s.maxItems ?? 3, 3)) });
    case "object": {
      const props: Record<string, JsonSchema> = s.properties ?? {};
      const required = new Set<string>(s.required ?? []);
      const fields = Object.entries(props).map(([k, p]) =>
        fc.tuple(fc.constant(k), validValue(doc, p, opts, k, depth + 1), required.has(k) || opts.allFields ? fc.constant(true) : fc.boolean()),
      );
      const extra = s.properties === undefined && s.additionalProperties && typeof s.additionalProperties === "object"
        ? fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), validValue(doc, s.additionalProperties, opts, "", depth + 1), { maxKeys: 3 })
        : fc.constant({});
      return fc.tuple(fc.tuple(...fields), extra).map(([fs, more]) => ({ ...more, ...Object.fromEntries(fs.filter(([, , keep]) => keep).map(([k, v]) => [k, v])) }));
    }
    default:
      return hostileJson();
  }
}

export interface FieldPath {
  path: string[];
  schema: JsonSchema;
  required: boolean;
  /** The union branches the field lies in: at `path`, an object of only these `keys` (so a handler engine does not carry an OpenAI engine's field). */
  branches: { path: string[]; keys: string[] }[];
}

/** Every field `schema` declares, through objects, unions and array items (`*`), to `maxDepth`. */
export function fieldPaths(doc: JsonSchema, schema: JsonSchema, maxDepth = 4, prefix: string[] = [], branches: FieldPath["branches"] = []): FieldPath[] {
  if (prefix.length >= maxDepth) return [];
  const s = deref(doc, schema);
  const out: FieldPath[] = [];
  for (const b of [...(s.oneOf ?? []), ...(s.anyOf ?? [])]) {
    const branch = deref(doc, b);
    const within = branch.properties ? [...branches, { path: prefix, keys: Object.keys(branch.properties) }] : branches;
    out.push(...fieldPaths(doc, branch, maxDepth, prefix, within));
  }
  for (const b of s.allOf ?? []) out.push(...fieldPaths(doc, b, maxDepth, prefix, branches));
  if (s.items) out.push(...fieldPaths(doc, s.items, maxDepth, [...prefix, "*"], branches));
  for (const [k, p] of Object.entries((s.properties ?? {}) as Record<string, JsonSchema>)) {
    out.push({ path: [...prefix, k], schema: deref(doc, p), required: (s.required ?? []).includes(k), branches });
    out.push(...fieldPaths(doc, p, maxDepth, [...prefix, k], branches));
  }
  const seen = new Set<string>();
  return out.filter((f) => !seen.has(f.path.join(".")) && seen.add(f.path.join(".")));
}

const at = (value: unknown, path: readonly string[]): unknown => path.reduce<unknown>((v, k) => (k === "*" ? (Array.isArray(v) ? v[0] : undefined) : isPlainObject(v) ? v[k] : undefined), value);

/** Whether `value` takes the union branches `field` lies in (every object on the way holds only that branch's keys). */
export function fitsBranches(value: unknown, field: FieldPath): boolean {
  return field.branches.every((b) => {
    const v = at(value, b.path);
    return isPlainObject(v) && Object.keys(v).every((k) => b.keys.includes(k));
  });
}

/** Object keys that pollute a prototype if a handler merges a body carelessly. */
export const pollutingEntries = (): fc.Arbitrary<[string, unknown][]> =>
  fc.subarray<[string, unknown]>(
    [
      ["__proto__", { polluted: "fuzz" }],
      ["constructor", { prototype: { polluted: "fuzz" } }],
      ["prototype", { polluted: "fuzz" }],
      ["toString", "x"],
      ["hasOwnProperty", 1],
    ],
    { minLength: 1 },
  );

/** Adds entries to an object value (or wraps a non-object in one). */
export function withEntries(value: unknown, entries: readonly [string, unknown][]): unknown {
  const base = isPlainObject(value) ? { ...value } : {};
  for (const [k, v] of entries) own(base, k, v);
  return base;
}

