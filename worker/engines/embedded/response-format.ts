import type { LlamaGrammar } from "node-llama-cpp";
import { z } from "zod";
import type { GrammarFactory } from "./grammars.ts";
import { toGbnfJsonSchema } from "./json-schema-grammar.ts";

/**
 * OpenAI's `response_format`. `json_schema.schema` is checked by `toGbnfJsonSchema`, which names
 * the offending keyword; here it only has to be an object. `strict` is accepted either way: the
 * engine always constrains decoding to the schema, which is what `strict: true` promises.
 */
export const responseFormat = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({
      type: z.literal("json_schema"),
      json_schema: z.object({
        name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "name must be 1 to 64 letters, digits, underscores or dashes"),
        description: z.string().nullish(),
        schema: z.record(z.string(), z.unknown()).nullish(),
        strict: z.boolean().nullish(),
      }),
    }),
  ])
  .nullish();
export type ResponseFormat = z.output<typeof responseFormat>;

/**
 * The grammar that constrains the output to `format`, or none for plain text. Throws a 400
 * `OpenAiError` (param `response_format.json_schema.schema…`) for a schema the grammar cannot honour.
 */
export async function responseFormatGrammar(format: ResponseFormat, grammars: GrammarFactory): Promise<LlamaGrammar | undefined> {
  if (format == null || format.type === "text") return undefined;
  if (format.type === "json_object") return grammars.jsonObject();
  // OpenAI: a json_schema without a schema allows any JSON object.
  const schema = format.json_schema.schema ?? { type: "object", additionalProperties: true };
  return grammars.jsonSchema(toGbnfJsonSchema(schema, "response_format.json_schema.schema"));
}
