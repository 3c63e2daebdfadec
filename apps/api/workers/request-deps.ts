import { AsyncLocalStorage } from "node:async_hooks";
import type { ApiDeps } from "../api-deps.ts";

/**
 * Lets one app (built once per isolate: `createApp` costs milliseconds of CPU, which Workers bill)
 * use each request's own services: the app is built on a facade whose services forward every
 * property and call to the services of the request being served (AsyncLocalStorage), since
 * workerd's sockets, and so the services holding them, cannot outlive their request.
 */
export class RequestDeps {
  private readonly store = new AsyncLocalStorage<ApiDeps>();

  /** Runs `fn` (a request's handling, and everything it starts) with `deps` as the current ones. */
  run<T>(deps: ApiDeps, fn: () => T): T {
    return this.store.run(deps, fn);
  }

  /**
   * Deps for `createApp`: functions and class instances forward to the current request's; plain
   * values (config: tokens, policies, retention, lists) are `sample`'s, the same in every request.
   */
  facade(sample: ApiDeps): ApiDeps {
    const current = (): Record<string, unknown> => {
      const deps = this.store.getStore();
      if (!deps) throw new Error("no request in scope: RequestDeps.run was not called");
      return deps as unknown as Record<string, unknown>;
    };
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(sample)) {
      if (typeof value === "function") {
        out[key] = (...args: unknown[]) => (current()[key] as (...a: unknown[]) => unknown)(...args);
      } else if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) !== Object.prototype && !Array.isArray(value)) {
        // A service: `instanceof` still holds; methods run bound to the request's own instance.
        out[key] = new Proxy(Object.create(Object.getPrototypeOf(value) as object) as object, {
          get: (_t, prop) => {
            const target = current()[key] as object;
            const v = Reflect.get(target, prop, target) as unknown;
            return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
          has: (_t, prop) => prop in (current()[key] as object),
        });
      } else out[key] = value;
    }
    return out as unknown as ApiDeps;
  }
}
