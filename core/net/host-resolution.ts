import { promises as dns, type LookupAddress } from "node:dns";
import type { LookupFunction } from "node:net";
import { checkAddress, checkUrl, type Refusal, type UrlPolicy } from "./url-policy.ts";

/** Every address a host name resolves to, as the system resolver answers (hosts file included). */
export type ResolveAll = (host: string) => Promise<LookupAddress[]>;

export const systemResolveAll: ResolveAll = (host) => dns.lookup(host, { all: true, verbatim: true });

/** Resolver errors that mean "this name does not resolve from here", as opposed to a refusal. */
const UNRESOLVED = new Set(["ENOTFOUND", "EAI_AGAIN", "ENODATA", "EAI_NONAME", "EAI_NODATA", "ETIMEOUT", "ESERVFAIL"]);

export interface SubmissionCheckOptions {
  /** Default: the system resolver. */
  resolve?: ResolveAll;
  /** A resolver slower than this counts as "does not resolve here" (ms). Default 2000. */
  timeoutMs?: number;
}

/**
 * The check at submission: scheme and literal address, then every address the name resolves to
 * from here. A name that does not resolve here (these hosts may have no internet DNS, or the record
 * may not exist yet) is accepted, `deferred`: whoever connects checks the address it connects to
 * (`guardedLookup`), so this check is an early answer for the tenant, never the only one.
 */
export async function checkUrlAtSubmission(url: URL, policy: UrlPolicy, options: SubmissionCheckOptions = {}): Promise<{ ok: true; deferred: boolean } | Refusal> {
  const verdict = checkUrl(url, policy);
  if (!verdict.ok) return verdict;
  if (!verdict.resolve) return { ok: true, deferred: false };
  const resolve = options.resolve ?? systemResolveAll;
  const timeoutMs = options.timeoutMs ?? 2000;
  let timer: NodeJS.Timeout | undefined;
  let addresses: LookupAddress[] | "unresolved";
  try {
    addresses = await Promise.race([
      resolve(verdict.host),
      new Promise<"unresolved">((r) => {
        timer = setTimeout(() => r("unresolved"), timeoutMs);
      }),
    ]);
  } catch (err) {
    if (!UNRESOLVED.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
    addresses = "unresolved";
  } finally {
    clearTimeout(timer);
  }
  if (addresses === "unresolved" || addresses.length === 0) return { ok: true, deferred: true };
  for (const a of addresses) {
    const v = checkAddress(a.address, policy, verdict.allowListedOnly);
    if (!v.ok) return { ok: false, reason: `${verdict.host} resolves to ${v.reason}` };
  }
  return { ok: true, deferred: false };
}

/** A connection refused because of where its host name resolved to. */
export class AddressRefusedError extends Error {
  readonly code = "ADDRESS_REFUSED";
}

/**
 * A `lookup` for sockets (http.request, an http.Agent, net.connect) that refuses to connect when any
 * address the name resolves to is forbidden: the check happens on the very addresses the socket then
 * uses, so a record that changed since submission (DNS rebinding) gains nothing. Literal IP hosts
 * never reach a lookup: check them with `checkUrl` first.
 */
export function guardedLookup(policy: UrlPolicy, allowListedOnly: boolean, resolve: ResolveAll = systemResolveAll): LookupFunction {
  return lookupWith(resolve, (hostname, address) => {
    const v = checkAddress(address, policy, allowListedOnly);
    return v.ok ? undefined : new AddressRefusedError(`${hostname} resolves to ${v.reason}`);
  });
}

/** A socket `lookup` answered by `resolve`; `refuse` may veto any address (then the connection fails with its error). */
export function lookupWith(resolve: ResolveAll, refuse: (hostname: string, address: string) => Error | undefined = () => undefined): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (found) => {
        const addresses = options.family === 4 || options.family === 6 ? found.filter((a) => a.family === options.family) : found;
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
          err.code = "ENOTFOUND";
          return callback(err, "");
        }
        for (const a of addresses) {
          const err = refuse(hostname, a.address);
          if (err !== undefined) return callback(err, "");
        }
        if (options.all) return callback(null, addresses);
        callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ""),
    );
  };
}

/**
 * The check at connect time for a URL a tenant named: its scheme and literal address now, and a
 * `lookup` for its sockets that judges every address its name resolves to (a name the allow-list
 * trusts may resolve anywhere).
 */
export function connectionLookup(url: URL, policy: UrlPolicy, resolve: ResolveAll = systemResolveAll): { ok: true; lookup: LookupFunction } | Refusal {
  const verdict = checkUrl(url, policy);
  if (!verdict.ok) return verdict;
  // Literal addresses were judged just now and never reach a lookup.
  return { ok: true, lookup: verdict.resolve ? guardedLookup(policy, verdict.allowListedOnly, resolve) : lookupWith(resolve) };
}
