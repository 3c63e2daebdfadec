import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { join, posix } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { AddressRefusedError, guardedLookup, lookupWith, type ResolveAll } from "../../core/net/host-resolution.ts";
import { checkUrl, type UrlPolicy } from "../../core/net/url-policy.ts";
import { rangeHeader, totalFromContentRange } from "../../core/weights/range-plan.ts";
import { ModelSourceError, redactUri, type DownloadHooks, type MaterialisedModel, type ModelSource } from "./model-source.ts";
import { rangedDownload } from "./ranged-download.ts";

export interface HttpModelSourceOptions {
  /**
   * Where downloads may go (core/engine/model-source-policy.ts `modelUrlPolicy`): checked for the URL
   * and for every redirect before a request, and for the addresses a host name resolves to as the
   * socket connects. Refusals are MODEL_SOURCE_FORBIDDEN.
   */
  policy: UrlPolicy;
  /** Resolver beneath the connect-time check. Default: the system's (hosts file and DNS). */
  resolve?: ResolveAll;
  /** PEM certificates trusted for https:// in addition to Node's bundled roots (a private CA). Default: none. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Agents to send requests through (proxies, keep-alive pools). Default: Node's global agents. */
  agents?: { http?: http.Agent; https?: https.Agent };
  /** Headers for the URL's own origin (e.g. `Authorization`); not forwarded when a redirect leaves it. */
  headers?: Record<string, string>;
  /** Redirects followed before giving up. Default 5. */
  maxRedirects?: number;
  /** A response that sends nothing for this long is abandoned (ms). Default 60000. */
  idleTimeoutMs?: number;
  /** Bytes per ranged GET when the server supports ranges. Default 8 MiB. */
  partBytes?: number;
  /** Ranged GETs in flight at once. Default 8. */
  rangeConcurrency?: number;
}

/**
 * `https://` and `http://` URLs: one file. The first request asks for a range; a server that
 * answers 206 gets the rest as parallel ranged GETs (pinned to its strong ETag), one that answers
 * 200 streams the whole body. Either way the bytes are hashed as they arrive. Redirects are
 * followed (Hugging Face and presigned-URL hosts answer with one) one at a time, each judged by
 * the policy like the first URL, and never from https to http. Built on node:http(s) rather
 * than fetch because Node 20's fetch takes a private CA only through undici's own Agent, which is
 * not a dependency here.
 */
export class HttpModelSource implements ModelSource {
  readonly schemes = ["https:", "http:"] as const;
  private readonly ca: Array<string | Buffer> | undefined;

  constructor(private readonly options: HttpModelSourceOptions) {
    const extra = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
    this.ca = extra.length > 0 ? [...rootCertificates, ...extra] : undefined;
  }

  async authorize(uri: URL): Promise<void> {
    const verdict = checkUrl(uri, this.options.policy);
    if (!verdict.ok) throw new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `${redactUri(uri)}: ${verdict.reason}`);
  }

  async materialise(uri: URL, destDir: string, signal?: AbortSignal, hooks?: DownloadHooks): Promise<MaterialisedModel> {
    const partBytes = this.options.partBytes ?? 8 * 1024 * 1024;
    // The first part asked for as a range: a server that supports ranges says the total in
    // Content-Range and the rest is fetched in parallel; one that does not answers 200 with the whole body.
    const first = await this.get(uri, uri.origin, signal, this.options.maxRedirects ?? 5, { range: rangeHeader({ start: 0, end: partBytes - 1 }) });
    const file = join(destDir, fileName(uri));
    const total = first.res.statusCode === 206 ? totalFromContentRange(first.res.headers["content-range"]) : undefined;
    if (total !== undefined) {
      try {
        await mkdir(destDir, { recursive: true });
        await hooks?.expectBytes?.(total);
        return { path: file, sha256: await this.rangedRest(uri, first, total, partBytes, file, signal, hooks) };
      } catch (err) {
        first.res.destroy();
        if (err instanceof ModelSourceError) throw err;
        throw new ModelSourceError("MODEL_FETCH_FAILED", `downloading ${redactUri(uri)} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    const res = first.res;
    const declared = res.headers["content-length"] === undefined ? undefined : Number(res.headers["content-length"]);
    try {
      await mkdir(destDir, { recursive: true });
      if (declared !== undefined && Number.isSafeInteger(declared)) await hooks?.expectBytes?.(declared);
    } catch (err) {
      res.destroy();
      throw err;
    }
    // Hashed as it streams: the store keys the cache by this digest without reading the file again.
    const hash = createHash("sha256");
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        hooks?.onBytes?.(chunk.length);
        done(null, chunk);
      },
    });
    try {
      await pipeline(res, tap, createWriteStream(file), signal ? { signal } : {});
    } catch (err) {
      throw new ModelSourceError("MODEL_FETCH_FAILED", `downloading ${redactUri(uri)} failed: ${(err as Error).message}`, { cause: err });
    }
    const written = (await stat(file)).size;
    if (declared !== undefined && written !== declared) {
      throw new ModelSourceError("MODEL_FETCH_FAILED", `downloading ${redactUri(uri)} stopped after ${written} of ${declared} bytes`);
    }
    return { path: file, sha256: hash.digest("hex") };
  }

  /**
   * The rest of a ranged download whose first part is `first` (206): every part after the first is
   * a GET of the URL the redirects led to, pinned with If-Match to the first part's ETag when it has
   * a strong one, and must come back 206 for exactly its range.
   */
  private async rangedRest(uri: URL, first: { res: IncomingMessage; url: URL }, total: number, partBytes: number, file: string, signal: AbortSignal | undefined, hooks: DownloadHooks | undefined): Promise<string> {
    const etag = first.res.headers.etag;
    const pin: Record<string, string> = etag !== undefined && !etag.startsWith("W/") ? { "if-match": etag } : {};
    const firstRange = `bytes 0-${Math.min(partBytes, total) - 1}/${total}`;
    if (first.res.headers["content-range"] !== firstRange) throw new Error(`asked for ${firstRange}, the server answered ${first.res.headers["content-range"]}`);
    const got = await rangedDownload({
      size: total,
      partBytes,
      concurrency: this.options.rangeConcurrency ?? 8,
      file,
      ...(signal && { signal }),
      ...(hooks?.onBytes && { onBytes: hooks.onBytes }),
      fetchRange: async (range, rangeSignal) => {
        if (range.start === 0) return first.res;
        const { res } = await this.get(first.url, uri.origin, rangeSignal, 0, { range: rangeHeader(range), ...pin });
        const expected = `bytes ${range.start}-${range.end}/${total}`;
        if (res.statusCode !== 206 || res.headers["content-range"] !== expected) {
          res.destroy();
          throw new Error(`asked for ${expected}, the server answered HTTP ${res.statusCode} ${res.headers["content-range"] ?? "without Content-Range"}`);
        }
        return res;
      },
    });
    return got.sha256;
  }

  /** Resolves with a 2xx response, following redirects; rejects naming the status otherwise. */
  private get(url: URL, origin: string, signal: AbortSignal | undefined, redirectsLeft: number, extra: Record<string, string> = {}): Promise<{ res: IncomingMessage; url: URL }> {
    const secure = url.protocol === "https:";
    const agent = secure ? this.options.agents?.https : this.options.agents?.http;
    // Range and If-Match follow redirects (a presigned target serves the bytes); credentials do not.
    const headers = { ...(url.origin === origin ? this.options.headers : undefined), ...extra };
    const idleMs = this.options.idleTimeoutMs ?? 60_000;
    const verdict = checkUrl(url, this.options.policy);
    if (!verdict.ok) return Promise.reject(new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `${redactUri(url)}: ${verdict.reason}`));
    // A host name is judged on the addresses the socket is about to use; a literal address was judged above.
    const { resolve: resolveHost } = this.options;
    const lookup = verdict.resolve ? guardedLookup(this.options.policy, verdict.allowListedOnly, resolveHost) : resolveHost && lookupWith(resolveHost);
    return new Promise<{ res: IncomingMessage; url: URL }>((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const onResponse = (res: IncomingMessage) => {
        response = res;
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (status >= 300 && status < 400 && location !== undefined) {
          res.resume();
          const next = new URL(location, url);
          if (redirectsLeft === 0) return reject(new ModelSourceError("MODEL_FETCH_FAILED", `${redactUri(url)}: too many redirects`));
          if (secure && next.protocol !== "https:") return reject(new ModelSourceError("MODEL_FETCH_FAILED", `${redactUri(url)} redirects from https to ${next.protocol}`));
          return resolve(this.get(next, origin, signal, redirectsLeft - 1, extra));
        }
        if (status < 200 || status >= 300) {
          res.resume();
          const code = status === 404 || status === 410 ? "MODEL_NOT_FOUND" : "MODEL_FETCH_FAILED";
          return reject(new ModelSourceError(code, `GET ${redactUri(url)} answered HTTP ${status}`));
        }
        resolve({ res, url });
      };
      const options = { headers, agent, signal, ...(lookup && { lookup }), ...(secure && this.ca !== undefined && { ca: this.ca }) };
      const req = secure ? https.get(url, options, onResponse) : http.get(url, options, onResponse);
      // The socket's idle timer keeps running while the body streams; destroying the response (once
      // there is one) hands this reason to the pipeline instead of a bare "aborted".
      req.setTimeout(idleMs, () => {
        const err = new Error(`no data for ${idleMs} ms`);
        if (response) response.destroy(err);
        else req.destroy(err);
      });
      req.on("error", (err) => {
        const code = err instanceof AddressRefusedError ? "MODEL_SOURCE_FORBIDDEN" : "MODEL_FETCH_FAILED";
        reject(new ModelSourceError(code, `GET ${redactUri(url)} failed: ${err.message}`, { cause: err }));
      });
    });
  }
}

/** The URL's last path segment, or "model" when it has none usable as a file name. */
function fileName(uri: URL): string {
  let name: string;
  try {
    name = decodeURIComponent(posix.basename(uri.pathname));
  } catch {
    return "model";
  }
  return name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0") ? "model" : name;
}
