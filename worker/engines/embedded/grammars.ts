import type { GbnfJsonSchema, Llama, LlamaGrammar } from "node-llama-cpp";

/**
 * What node-llama-cpp's JSON grammars end with after the JSON value: four newlines (its stop
 * trigger) and any more. A JSON value itself never holds two newlines in a row (its whitespace
 * rules allow one newline and an indent), so cutting the text here never cuts the value.
 */
export const JSON_GRAMMAR_END = "\n\n\n\n";

/** node-llama-cpp 3.21.1's integer rule: its exponent may be negative, and `1e-1` is not an integer. */
const INTEGER_RULE = /^integer-number-rule ::= .*$/m;
const INTEGER_RULE_FIXED = 'integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ([eE] [+]? [0-9]{1,2})?';

/** Grammars kept for reuse: a client sends the same schema and tools with every request. */
const CACHE_SIZE = 64;

/**
 * Builds the grammars the OpenAI features constrain decoding with, from node-llama-cpp's JSON
 * schema grammar generator, and keeps the most recently used ones (compiling a grammar parses its
 * GBNF; the per-request evaluation state is separate, so one grammar serves concurrent requests).
 */
export class GrammarFactory {
  private readonly cache = new Map<string, Promise<LlamaGrammar>>();

  constructor(private readonly llama: Llama) {}

  /** The GBNF text of `schema`'s grammar (the JSON value, then {@link JSON_GRAMMAR_END}), integers fixed. */
  async jsonSchemaGbnf(schema: GbnfJsonSchema): Promise<string> {
    // The generic signature infers a literal type from its argument; a schema built at run time has none.
    const generated = await this.llama.createGrammarForJsonSchema(schema as Readonly<{ type: "object" }>);
    return generated.grammar.replace(INTEGER_RULE, INTEGER_RULE_FIXED);
  }

  /** Output that is one JSON value matching `schema`. */
  jsonSchema(schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    return this.cached(`schema:${JSON.stringify(schema)}`, async () => this.fromGbnf(await this.jsonSchemaGbnf(schema)));
  }

  /** Output that is one JSON object, any object (OpenAI's `json_object`). */
  jsonObject(): Promise<LlamaGrammar> {
    return this.jsonSchema({ type: "object", additionalProperties: true });
  }

  /** A grammar from GBNF text whose JSON ends with {@link JSON_GRAMMAR_END}. */
  gbnf(key: string, build: () => Promise<string>): Promise<LlamaGrammar> {
    return this.cached(`gbnf:${key}`, async () => this.fromGbnf(await build()));
  }

  private fromGbnf(grammar: string): Promise<LlamaGrammar> {
    return this.llama.createGrammar({ grammar, stopGenerationTriggers: [JSON_GRAMMAR_END], trimWhitespaceSuffix: true });
  }

  private cached(key: string, build: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key); // re-inserted below: the map's order is the recency order
      this.cache.set(key, hit);
      return hit;
    }
    const made = build();
    this.cache.set(key, made);
    made.catch(() => this.cache.delete(key));
    const oldest = this.cache.keys().next().value;
    if (this.cache.size > CACHE_SIZE && oldest !== undefined) this.cache.delete(oldest);
    return made;
  }
}
