import { describe, expect, it } from "vitest";
import { toGbnfJsonSchema } from "./json-schema-grammar.ts";
import { OpenAiError } from "./openai-error.ts";

const P = "response_format.json_schema.schema";

function refusedParam(schema: unknown): string | null {
  try {
    toGbnfJsonSchema(schema, P);
  } catch (err) {
    expect(err).toBeInstanceOf(OpenAiError);
    expect((err as OpenAiError).status).toBe(400);
    return (err as OpenAiError).param;
  }
  throw new Error(`accepted ${JSON.stringify(schema)}`);
}

describe("toGbnfJsonSchema", () => {
  it("keeps what the grammar honours and drops annotations", () => {
    expect(toGbnfJsonSchema({ type: "object", title: "T", properties: { a: { type: "string", maxLength: 3, description: "d" } }, required: ["a"], additionalProperties: false }, P)).toEqual({
      type: "object",
      properties: { a: { type: "string", maxLength: 3, description: "d" } },
    });
  });

  it("turns an integer range into the enum of its values, exclusive bounds included", () => {
    expect(toGbnfJsonSchema({ type: "integer", minimum: 1, maximum: 3 }, P)).toEqual({ enum: [1, 2, 3] });
    expect(toGbnfJsonSchema({ type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 3 }, P)).toEqual({ enum: [1, 2] });
    expect(refusedParam({ type: "integer", minimum: 0 })).toBe(P);
    expect(refusedParam({ type: "integer", minimum: 0, maximum: 5000 })).toBe(P);
  });

  it("splits a list of types into alternatives, each with its own keywords", () => {
    expect(toGbnfJsonSchema({ type: ["string", "array"], maxLength: 2, maxItems: 1 }, P)).toEqual({ oneOf: [{ type: "string", maxLength: 2 }, { type: "array", maxItems: 1 }] });
    expect(toGbnfJsonSchema({ type: ["string", "null"] }, P)).toEqual({ oneOf: [{ type: "string" }, { type: "null" }] });
  });

  it("maps anyOf and references to the root's $defs or definitions", () => {
    expect(toGbnfJsonSchema({ anyOf: [{ $ref: "#/definitions/n" }, { const: 1 }], definitions: { n: { type: "null" } } }, P)).toEqual({
      oneOf: [{ $ref: "#/$defs/n" }, { const: 1 }],
      $defs: { n: { type: "null" } },
    });
  });

  it("refuses what the grammar would ignore, naming the keyword", () => {
    expect(refusedParam({ type: "number", maximum: 1 })).toBe(`${P}.maximum`);
    expect(refusedParam({ type: "string", pattern: "x" })).toBe(`${P}.pattern`);
    expect(refusedParam({ type: "object", properties: { a: { allOf: [] } } })).toBe(`${P}.properties.a.allOf`);
    expect(refusedParam({ type: "array", items: { type: "object", properties: {}, required: ["x"] } })).toBe(`${P}.items.required`);
    expect(refusedParam({ enum: [{ a: 1 }] })).toBe(`${P}.enum[0]`);
    expect(refusedParam({ type: "string", enum: [1] })).toBe(`${P}.enum[0]`);
    expect(refusedParam({ type: "string", minLength: 3, maxLength: 2 })).toBe(`${P}.maxLength`);
    expect(refusedParam({ type: "object", properties: { a: {}, b: {} }, maxProperties: 1 })).toBe(`${P}.maxProperties`);
    expect(refusedParam({ $ref: "https://example.com/s.json" })).toBe(`${P}.$ref`);
    expect(refusedParam({ type: "strng" })).toBe(`${P}.type`);
    expect(refusedParam({ minLength: 2 })).toBe(`${P}.minLength`);
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 100; i++) deep = { type: "array", items: deep };
    expect(refusedParam(deep)).toMatch(/^response_format\.json_schema\.schema(\.items)+$/);
  });
});
