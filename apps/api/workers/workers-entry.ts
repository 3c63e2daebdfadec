import { loadWorkersConfig, type WorkersConfig } from "../../../core/config/workers-config.ts";
import { consoleLog } from "../../../core/log/console-log.ts";
import { frontDoor } from "./front-door.ts";
import { forwardToOrigin } from "./origin-forward.ts";
import { WorkersApi, type WaitUntil } from "./request-scope.ts";

const json = (status: number, code: string, error: string) =>
  new Response(JSON.stringify({ error, code }), { status, headers: { "content-type": "application/json" } });

/** Parsed once per isolate: the bindings of an isolate do not change. */
let isolate: { bindings: string; config: WorkersConfig; api: WorkersApi } | undefined;

/** The string bindings as one text: whether `env` is the same object from request to request is the runtime's business. */
const fingerprint = (env: Record<string, unknown>) => JSON.stringify(Object.entries(env).filter(([, v]) => typeof v === "string").sort(([a], [b]) => (a < b ? -1 : 1)));

/**
 * The Cloudflare Workers entry (wrangler.toml): the API app itself, from the Worker's bindings, on
 * per-request connections (request-scope.ts); what a Worker cannot serve goes to HEARTH_ORIGIN
 * (front-door.ts). The Node entry is apps/api/main.ts.
 */
export default {
  async fetch(request: Request, env: Record<string, unknown>, ctx: WaitUntil): Promise<Response> {
    const bindings = fingerprint(env);
    if (isolate?.bindings !== bindings) {
      let config: WorkersConfig;
      try {
        config = loadWorkersConfig(env);
      } catch (err) {
        // The message names each bad variable; it belongs in the operator's log, not in a caller's answer.
        console.error(err instanceof Error ? err.message : String(err));
        return json(500, "misconfigured", "the Worker's bindings are invalid; its log names them");
      }
      // /admin is never served here, so no admin token is needed: an unguessable one fills the slot.
      const adminToken = Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0")).join("");
      isolate = { bindings, config, api: new WorkersApi(config, adminToken, consoleLog("api-workers", config.logLevel)) };
    }
    const { config, api } = isolate;
    switch (frontDoor(new URL(request.url).pathname)) {
      case "app":
        return api.serve(request, ctx);
      case "origin":
        if (config.origin === undefined) return json(501, "not_on_workers", "this route is served by the origin API; set HEARTH_ORIGIN to forward it");
        return forwardToOrigin(config.origin, request);
      case "unavailable":
        return json(501, "not_on_workers", "metrics are scraped from the Node API processes, not from Workers isolates");
      case "refused":
        return json(404, "not_found", "no such route");
    }
  },
};
