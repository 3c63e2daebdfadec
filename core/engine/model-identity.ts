import { servedModelName } from "./served-model-name.ts";

export interface ModelIdentity {
  /** The name the engine serves the model under. */
  name: string;
  /** Where its weights come from (the model URI), which pins the exact weights; credentials and query strings left out. */
  version: string;
}

/**
 * What the audit log records of an endpoint's model: an OpenAI engine's served name and model
 * source; null for a handler module (its model, if any, is the handler's own business). A URI's
 * user info, query and fragment are dropped: a presigned URL's signature or a password must not
 * reach the audit log.
 */
export function modelIdentity(engine: { kind: string; model?: unknown; servedModelName?: unknown }): ModelIdentity | null {
  if (engine.kind !== "openai" || typeof engine.model !== "string") return null;
  const name = servedModelName({ model: engine.model, ...(typeof engine.servedModelName === "string" && { servedModelName: engine.servedModelName }) });
  return { name, version: withoutSecrets(engine.model) };
}

function withoutSecrets(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)([^?#]*)/i.exec(uri);
  if (!m) return uri.split(/[?#]/)[0]!;
  const host = m[2]!.slice(m[2]!.lastIndexOf("@") + 1);
  return `${m[1]}${host}${m[3]}`;
}
