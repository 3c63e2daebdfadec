import { describe, expect, it } from "vitest";
import { modelIdentity } from "./model-identity.ts";

describe("modelIdentity", () => {
  it("names an OpenAI engine's model by its served name and source", () => {
    expect(modelIdentity({ kind: "openai", model: "file:///models/llama-3-8b.gguf" })).toEqual({ name: "llama-3-8b", version: "file:///models/llama-3-8b.gguf" });
    expect(modelIdentity({ kind: "openai", model: "s3://b/llama/rev-7/", servedModelName: "chat" })).toEqual({ name: "chat", version: "s3://b/llama/rev-7/" });
    expect(modelIdentity({ kind: "openai", model: "/srv/m.gguf" })).toEqual({ name: "m", version: "/srv/m.gguf" });
  });

  it("leaves credentials, query strings and fragments out of the version", () => {
    expect(modelIdentity({ kind: "openai", model: "https://user:pw@host.example/m.gguf?X-Amz-Signature=abc#frag" })?.version).toBe("https://host.example/m.gguf");
    expect(modelIdentity({ kind: "openai", model: "/srv/m.gguf?token=1" })?.version).toBe("/srv/m.gguf");
  });

  it("has none for a handler module", () => {
    expect(modelIdentity({ kind: "handler" })).toBeNull();
  });
});
