import { describe, expect, it } from "vitest";
import { base64Vector, embeddingInputs, embeddingsRequest } from "./embeddings-request.ts";
import { OpenAiError } from "./openai-error.ts";

describe("embeddings request", () => {
  it("turns each of OpenAI's four input forms into one item per embedding", () => {
    expect(embeddingInputs("a")).toEqual(["a"]);
    expect(embeddingInputs(["a", "b"])).toEqual(["a", "b"]);
    expect(embeddingInputs([1, 2])).toEqual([[1, 2]]);
    expect(embeddingInputs([[1], [2, 3]])).toEqual([[1], [2, 3]]);
  });

  it("refuses an empty item with a 400 naming input, saying which one", () => {
    const refusal = (input: Parameters<typeof embeddingInputs>[0]) => {
      try {
        embeddingInputs(input);
      } catch (err) {
        return err instanceof OpenAiError ? { status: err.status, param: err.param, message: err.message } : err;
      }
      return undefined;
    };
    expect(refusal("")).toEqual({ status: 400, param: "input", message: "input must not be empty" });
    expect(refusal(["a", ""])).toEqual({ status: 400, param: "input", message: "input[1] must not be empty" });
    expect(refusal([[1], []])).toMatchObject({ param: "input", message: "input[1] must not be empty" });
  });

  it("parses float and base64, and refuses other encodings and shapes", () => {
    expect(embeddingsRequest.parse({ input: "a", encoding_format: null, dimensions: null }).encoding_format).toBeNull();
    expect(embeddingsRequest.safeParse({ input: "a", encoding_format: "hex" }).success).toBe(false);
    expect(embeddingsRequest.safeParse({ input: [] }).success).toBe(false);
    expect(embeddingsRequest.safeParse({ input: Array.from({ length: 2049 }, () => "a") }).success).toBe(false);
    expect(embeddingsRequest.safeParse({ input: [1, "a"] }).success).toBe(false);
  });

  it("encodes a vector as float32 little-endian in base64, as OpenAI does", () => {
    // 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 (little-endian).
    expect(Buffer.from(base64Vector([1, -2]), "base64")).toEqual(Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]));
    const values = [0.1, -0.25, 3.5];
    const decoded = new Float32Array(new Uint8Array(Buffer.from(base64Vector(values), "base64")).buffer);
    expect(Array.from(decoded)).toEqual(values.map(Math.fround));
  });
});
