import type { GbnfJsonSchema } from "node-llama-cpp";
import { OpenAiError } from "./openai-error.ts";

/*
 * A caller's JSON Schema, translated to the subset node-llama-cpp turns into a grammar
 * (`GbnfJsonSchema`). Every keyword is either honoured by the grammar, an annotation that does not
 * constrain (title, description, default, examples…), or refused with a 400 naming where it is: a
 * keyword the grammar ignored would let the output break the schema while the caller trusted it.
 *
 * The grammar may produce a subset of what the schema allows (every declared property is written,
 * none undeclared unless `additionalProperties` asks for them): the output always validates.
 */

/** Deepest nesting of schemas accepted: deeper is refused, not left to fail inside node-llama-cpp (512) as a 500. */
const MAX_DEPTH = 64;

/** Most integers an integer range may hold: a range becomes an enum of its values (node-llama-cpp has no ranges). */
const MAX_INTEGER_RANGE = 1000;

const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$comment", "$schema", "$id", "deprecated", "readOnly", "writeOnly"]);
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);
const FORMATS = new Set(["date-time", "date", "time"]);

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

class Translator {
  constructor(
    /** `response_format.json_schema.schema`: where the schema sits in the request, for `param`. */
    private readonly param: string,
    /** Names of the root's `$defs` / `definitions`, which `$ref`s may point to. */
    private readonly defs: ReadonlySet<string>,
  ) {}

  refuse(path: string, message: string): never {
    throw OpenAiError.invalidRequest(`${this.param}${path}: ${message}`, `${this.param}${path}`, "invalid_json_schema");
  }

  schema(node: unknown, path: string): GbnfJsonSchema {
    if (path.split(".").length > MAX_DEPTH) this.refuse(path, `schemas nested deeper than ${MAX_DEPTH} levels are not supported`);
    // `true` and `{}` allow any JSON value.
    if (node === true) return this.any();
    if (!isObject(node)) this.refuse(path, "a schema must be an object or true");
    const keys = Object.keys(node).filter((k) => !ANNOTATIONS.has(k) && k !== "$defs" && k !== "definitions");
    if (path !== "" && ("$defs" in node || "definitions" in node)) this.refuse(path, "$defs are only supported at the root of the schema");
    const description = typeof node.description === "string" ? { description: node.description } : {};

    if ("$ref" in node) {
      if (keys.length > 1) this.refuse(path, "$ref with sibling keywords is not supported");
      const ref = node.$ref;
      const name = typeof ref === "string" ? /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref)?.[1] : undefined;
      if (name === undefined || !this.defs.has(name)) this.refuse(`${path}.$ref`, `only references to the root's $defs or definitions are supported, got ${JSON.stringify(ref)}`);
      return { $ref: `#/$defs/${name}`, ...description } as GbnfJsonSchema;
    }
    if ("const" in node) {
      if (keys.length > 1) this.refuse(path, "const with sibling keywords is not supported");
      return { const: this.literal(node.const, `${path}.const`), ...description };
    }
    if ("enum" in node) {
      const values = node.enum;
      if (!Array.isArray(values) || values.length === 0) this.refuse(`${path}.enum`, "enum must be a non-empty array");
      const allowed = keys.filter((k) => k !== "enum" && k !== "type");
      if (allowed.length > 0) this.refuse(`${path}.${allowed[0]}`, "keywords beside enum are not supported");
      const literals = values.map((v, i) => this.literal(v, `${path}.enum[${i}]`));
      if ("type" in node) {
        const types = this.types(node.type, path);
        const bad = literals.findIndex((v) => !types.some((t) => matchesType(v, t)));
        if (bad >= 0) this.refuse(`${path}.enum[${bad}]`, `value is not of type ${JSON.stringify(node.type)}`);
      }
      return { enum: literals, ...description };
    }
    if ("anyOf" in node) {
      if (keys.length > 1) this.refuse(path, "anyOf with sibling keywords is not supported");
      const options = node.anyOf;
      if (!Array.isArray(options) || options.length === 0) this.refuse(`${path}.anyOf`, "anyOf must be a non-empty array");
      // node-llama-cpp calls its alternatives oneOf, but they mean anyOf: any one of them may match.
      return { oneOf: options.map((o, i) => this.schema(o, `${path}.anyOf[${i}]`)), ...description };
    }
    for (const k of ["oneOf", "allOf", "not", "if", "then", "else", "pattern", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas", "contains", "uniqueItems", "multipleOf", "unevaluatedProperties", "unevaluatedItems"]) {
      if (k in node) this.refuse(`${path}.${k}`, `${k} is not supported by the engine's grammar`);
    }
    if (!("type" in node)) {
      if (keys.length > 0) this.refuse(`${path}.${keys[0]}`, `${keys[0]} without a type is not supported`);
      return this.any();
    }
    const types = this.types(node.type, path);
    if (types.length > 1) return { oneOf: types.map((t) => this.typed(node, t, path)), ...description };
    return { ...this.typed(node, types[0]!, path), ...description } as GbnfJsonSchema;
  }

  private types(type: unknown, path: string): string[] {
    const list = Array.isArray(type) ? type : [type];
    if (list.length === 0) this.refuse(`${path}.type`, "type must not be empty");
    for (const t of list) if (typeof t !== "string" || !TYPES.has(t)) this.refuse(`${path}.type`, `${JSON.stringify(t)} is not a JSON Schema type`);
    return list as string[];
  }

  /** `node` read as a schema of the one type `type` (its other types' keywords do not apply to it). */
  private typed(node: Json, type: string, path: string): GbnfJsonSchema {
    const listed: readonly unknown[] = Array.isArray(node.type) ? node.type : [node.type];
    const only = (allowed: readonly string[]) => {
      for (const k of Object.keys(node)) {
        if (ANNOTATIONS.has(k) || k === "type" || k === "$defs" || k === "definitions" || allowed.includes(k)) continue;
        // Another listed type's keyword, as in {"type": ["string", "array"], "maxItems": 3}, applies to that type only.
        const owners = keywordTypes[k];
        if (owners && !owners.includes(type) && owners.some((t) => listed.includes(t))) continue;
        this.refuse(`${path}.${k}`, `${k} is not supported by the engine's grammar`);
      }
    };
    switch (type) {
      case "string": {
        only(["minLength", "maxLength", "format"]);
        const { minLength, maxLength, format } = node;
        if (minLength !== undefined && !isCount(minLength)) this.refuse(`${path}.minLength`, "minLength must be a non-negative integer");
        if (maxLength !== undefined && !isCount(maxLength)) this.refuse(`${path}.maxLength`, "maxLength must be a non-negative integer");
        if (isCount(minLength) && isCount(maxLength) && maxLength < minLength) this.refuse(`${path}.maxLength`, "maxLength is less than minLength");
        if (format !== undefined) {
          if (typeof format !== "string" || !FORMATS.has(format)) this.refuse(`${path}.format`, `format ${JSON.stringify(format)} is not supported (only date-time, date, time)`);
          if (minLength !== undefined || maxLength !== undefined) this.refuse(`${path}.format`, "format with minLength or maxLength is not supported");
          return { type: "string", format: format as "date-time" | "date" | "time" };
        }
        return { type: "string", ...(isCount(minLength) && { minLength }), ...(isCount(maxLength) && { maxLength }) };
      }
      case "integer":
        only(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]);
        return this.integer(node, path);
      case "number":
        only([]);
        return { type: "number" };
      case "boolean":
      case "null":
        only([]);
        return { type };
      case "array": {
        only(["items", "prefixItems", "minItems", "maxItems"]);
        const { items, prefixItems, minItems, maxItems } = node;
        if (minItems !== undefined && !isCount(minItems)) this.refuse(`${path}.minItems`, "minItems must be a non-negative integer");
        if (maxItems !== undefined && !isCount(maxItems)) this.refuse(`${path}.maxItems`, "maxItems must be a non-negative integer");
        if (isCount(minItems) && isCount(maxItems) && maxItems < minItems) this.refuse(`${path}.maxItems`, "maxItems is less than minItems");
        if (prefixItems !== undefined && !Array.isArray(prefixItems)) this.refuse(`${path}.prefixItems`, "prefixItems must be an array");
        if (items === false) this.refuse(`${path}.items`, "items: false is not supported");
        return {
          type: "array",
          ...(items !== undefined && { items: this.schema(items, `${path}.items`) }),
          ...(prefixItems !== undefined && { prefixItems: prefixItems.map((p, i) => this.schema(p, `${path}.prefixItems[${i}]`)) }),
          ...(isCount(minItems) && { minItems }),
          ...(isCount(maxItems) && { maxItems }),
        } as GbnfJsonSchema;
      }
      default: {
        only(["properties", "required", "additionalProperties", "minProperties", "maxProperties"]);
        const { properties = {}, required = [], additionalProperties, minProperties, maxProperties } = node;
        if (!isObject(properties)) this.refuse(`${path}.properties`, "properties must be an object");
        if (!Array.isArray(required) || required.some((r) => typeof r !== "string")) this.refuse(`${path}.required`, "required must be an array of strings");
        const names = Object.keys(properties);
        const missing = required.find((r) => !names.includes(r as string));
        if (minProperties !== undefined && !isCount(minProperties)) this.refuse(`${path}.minProperties`, "minProperties must be a non-negative integer");
        if (maxProperties !== undefined && !isCount(maxProperties)) this.refuse(`${path}.maxProperties`, "maxProperties must be a non-negative integer");
        // Every declared property is written, so fewer may not be allowed.
        if (isCount(maxProperties) && maxProperties < names.length) this.refuse(`${path}.maxProperties`, "maxProperties below the number of properties is not supported");
        // The grammar writes every declared property and only those by name: an undeclared required one could never appear.
        if (missing !== undefined) this.refuse(`${path}.required`, `required property ${JSON.stringify(missing)} is not in properties`);
        if (additionalProperties !== undefined && typeof additionalProperties !== "boolean" && !isObject(additionalProperties)) {
          this.refuse(`${path}.additionalProperties`, "additionalProperties must be a boolean or a schema");
        }
        return {
          type: "object",
          properties: Object.fromEntries(names.map((n) => [n, this.schema(properties[n], `${path}.properties.${n}`)])),
          ...(additionalProperties === true && { additionalProperties: true }),
          ...(isObject(additionalProperties) && { additionalProperties: this.schema(additionalProperties, `${path}.additionalProperties`) }),
          ...(isCount(minProperties) && { minProperties }),
          ...(isCount(maxProperties) && { maxProperties }),
        } as GbnfJsonSchema;
      }
    }
  }

  /** An integer, bounded or not; a bounded range becomes the enum of its values. */
  private integer(node: Json, path: string): GbnfJsonSchema {
    const bound = (k: string): number | undefined => {
      const v = node[k];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isFinite(v)) this.refuse(`${path}.${k}`, `${k} must be a number`);
      return v;
    };
    const min = Math.max(Math.ceil(bound("minimum") ?? -Infinity), Math.floor(bound("exclusiveMinimum") ?? -Infinity) + 1);
    const max = Math.min(Math.floor(bound("maximum") ?? Infinity), Math.ceil(bound("exclusiveMaximum") ?? Infinity) - 1);
    if (min === -Infinity && max === Infinity) return { type: "integer" };
    if (min === -Infinity || max === Infinity) this.refuse(path, "an integer bounded on one side only is not supported: give both minimum and maximum");
    if (max < min) this.refuse(path, "no integer lies between minimum and maximum");
    if (max - min + 1 > MAX_INTEGER_RANGE) this.refuse(path, `an integer range of more than ${MAX_INTEGER_RANGE} values is not supported`);
    return { enum: Array.from({ length: max - min + 1 }, (_, i) => min + i) };
  }

  private literal(v: unknown, path: string): string | number | boolean | null {
    if (v === null || typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) return v;
    return this.refuse(path, "only string, number, boolean and null values are supported");
  }

  /** Any JSON value: node-llama-cpp has no "any" schema, so the union of every type. */
  private any(): GbnfJsonSchema {
    return { oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "object", additionalProperties: true }, { type: "array" }] } as GbnfJsonSchema;
  }
}

/** The types each type-specific keyword constrains. */
const keywordTypes: Record<string, readonly string[] | undefined> = {
  minLength: ["string"],
  maxLength: ["string"],
  format: ["string"],
  minimum: ["integer", "number"],
  maximum: ["integer", "number"],
  exclusiveMinimum: ["integer", "number"],
  exclusiveMaximum: ["integer", "number"],
  items: ["array"],
  prefixItems: ["array"],
  minItems: ["array"],
  maxItems: ["array"],
  properties: ["object"],
  required: ["object"],
  additionalProperties: ["object"],
  minProperties: ["object"],
  maxProperties: ["object"],
};

function matchesType(v: string | number | boolean | null, type: string): boolean {
  if (type === "null") return v === null;
  if (type === "integer") return typeof v === "number" && Number.isInteger(v);
  return typeof v === type;
}

/**
 * Translates `schema` (found at `param` of the request) to node-llama-cpp's JSON schema subset.
 * Throws a 400 `OpenAiError` naming the offending keyword's path for anything the grammar cannot
 * honour or that is not valid JSON Schema.
 */
export function toGbnfJsonSchema(schema: unknown, param: string): GbnfJsonSchema {
  const root = isObject(schema) ? schema : {};
  const defsNode = root.$defs ?? root.definitions;
  const defsKey = root.$defs !== undefined ? "$defs" : "definitions";
  if (defsNode !== undefined && !isObject(defsNode)) throw OpenAiError.invalidRequest(`${param}.${defsKey} must be an object`, `${param}.${defsKey}`, "invalid_json_schema");
  const defs = isObject(defsNode) ? defsNode : {};
  const translator = new Translator(param, new Set(Object.keys(defs)));
  const translated = translator.schema(schema, "");
  if (Object.keys(defs).length === 0) return translated;
  const $defs = Object.fromEntries(Object.entries(defs).map(([name, def]) => [name, translator.schema(def, `.${defsKey}.${name}`)]));
  // node-llama-cpp reads `$defs` beside a reference, an alternative list, an object or an array.
  return { ...translated, $defs } as GbnfJsonSchema;
}
