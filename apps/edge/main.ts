import { createEdgeHandler } from "./edge-handler.ts";

/** Cloudflare Workers entry (wrangler.toml): the origin comes from the `HEARTH_ORIGIN` variable. */
export default {
  fetch(request: Request, env: { HEARTH_ORIGIN: string }): Promise<Response> {
    return createEdgeHandler({ origin: env.HEARTH_ORIGIN })(request);
  },
};
