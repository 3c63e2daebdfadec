import { createAdaptorServer, type ServerType } from "@hono/node-server";
import type { Server as HttpServer } from "node:http";
import { constants as h2, createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import type { TlsFiles } from "../../core/config/tls-files.ts";

/**
 * Connection settings of the Node entry. Chosen for long generations: a client keeps a read open up
 * to 300 s (`/runsync?wait=300000` writes nothing until the job ends; an SSE stream writes a comment
 * every 15 s), so nothing here may bound how long a *response* takes, only how long a *request* takes
 * to arrive and how long an idle connection is kept.
 */
export interface ConnectionSettings {
  /**
   * Most ms to receive a whole request, headers and body. HTTP/1.1: Node's `requestTimeout` (408),
   * which only runs until the request's last byte, so it never cuts a response however long. HTTP/2:
   * a stream whose client has not finished sending by then is reset (RST_STREAM CANCEL). Default
   * 300000 (Node's own): a 20 MB input over a slow link fits; a client trickling bytes does not hold a slot for ever.
   */
  requestTimeoutMs: number;
  /**
   * Most ms to receive a request's headers (HTTP/1.1 only; HTTP/2 headers come in one frame block).
   * Default 60000 (Node's own): bounds slowloris clients, and a real client sends its headers at once.
   */
  headersTimeoutMs: number;
  /**
   * How long a connection with no request in flight stays open. HTTP/1.1: Node's `keepAliveTimeout`,
   * announced as `Keep-Alive: timeout=75`, which fetch/undici clients honour. HTTP/2: a session with
   * no open stream is closed (GOAWAY) after this long; a session with any open stream (an SSE stream,
   * a long `/runsync`) never is. Default 75000 instead of Node's 5000: longer than the usual proxy or
   * load-balancer idle timeout (60 s), so the proxy, not Hearth, closes its idle pooled connections and
   * never races a reused one; and a client doing generation after generation keeps its TLS session
   * instead of paying a handshake each time.
   */
  keepAliveTimeoutMs: number;
  /** How often Node checks HTTP/1.1 connections against the two request timeouts (ms). Default 30000 (Node's own); tests shorten it. */
  checkIntervalMs: number;
}

export const DEFAULT_CONNECTION_SETTINGS: ConnectionSettings = {
  requestTimeoutMs: 300_000,
  headersTimeoutMs: 60_000,
  keepAliveTimeoutMs: 75_000,
  checkIntervalMs: 30_000,
};

/** Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const MAX_CONCURRENT_STREAMS = 250;

export interface ListenOptions {
  fetch: Parameters<typeof createAdaptorServer>[0]["fetch"];
  port: number;
  host: string;
  /** Serve HTTPS with HTTP/2 (and HTTP/1.1 for clients that do not offer h2 in ALPN). Absent: plain HTTP/1.1. */
  tls?: TlsFiles;
  connections?: Partial<ConnectionSettings>;
}

export interface Listening {
  url: string;
  port: number;
  /** Stops accepting, then ends every connection at once (long-polls would otherwise hold it open for their wait). */
  close(): Promise<void>;
}

/** Serves `fetch` over HTTP/1.1, or over TLS with HTTP/2 and HTTP/1.1, with the connection settings above. */
export async function listen(options: ListenOptions): Promise<Listening> {
  const settings = { ...DEFAULT_CONNECTION_SETTINGS, ...options.connections };
  const server: ServerType = options.tls
    ? createAdaptorServer({
        fetch: options.fetch,
        hostname: options.host,
        createServer: createSecureServer,
        // allowHTTP1: clients that do not offer h2 (Node's fetch, curl --http1.1) get HTTP/1.1 on the same port.
        // A client may hold at most this many streams open on one connection (Node's default is
        // 2^32-1): jobs are bounded by tenant quotas, this bounds the server's per-connection state,
        // as nginx (128) and Go (250) do. Clients queue further requests or open another connection.
        serverOptions: { cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } },
      })
    : createAdaptorServer({ fetch: options.fetch, hostname: options.host });
  // HTTP/1.1, plain or over TLS (allowHTTP1 hands such connections to Node's HTTP/1.1 code with the
  // HTTP/2 server as `this`, which has no keepAliveTimeout of its own: it would keep them for ever).
  const http1 = server as unknown as Pick<HttpServer, "requestTimeout" | "headersTimeout" | "keepAliveTimeout" | "timeout"> & { connectionsCheckingInterval: number };
  http1.requestTimeout = settings.requestTimeoutMs;
  http1.headersTimeout = Math.min(settings.headersTimeoutMs, settings.requestTimeoutMs); // Node refuses headers > request
  http1.keepAliveTimeout = settings.keepAliveTimeoutMs;
  http1.connectionsCheckingInterval = settings.checkIntervalMs;
  // No socket inactivity timeout: a `/runsync` long-poll is silent for up to 300 s by design.
  http1.timeout = 0;

  // The raw TCP sockets, not 'secureConnection' ones: a client can finish its handshake (and open a
  // session) before the server has emitted 'secureConnection', and close() must not miss it.
  const tlsSockets = new Set<Socket>();
  if (options.tls) {
    const secure = server as Http2SecureServer;
    secure.on("connection", (socket: Socket) => {
      tlsSockets.add(socket);
      socket.once("close", () => tlsSockets.delete(socket));
    });
    secure.on("session", (session: ServerHttp2Session) => closeWhenIdle(session, settings.keepAliveTimeoutMs));
    secure.on("stream", (stream: ServerHttp2Stream) => resetIfRequestUnfinished(stream, settings.requestTimeoutMs));
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
  return {
    url: `${options.tls ? "https" : "http"}://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        for (const socket of tlsSockets) socket.destroy();
      }),
  };
}

/**
 * HTTP/2's counterpart of keep-alive: a session with no open stream for `idleMs` is closed
 * gracefully. Not Node's session timeout (`server.setTimeout`), which counts silence rather than open
 * streams, so it would cut a `/runsync` that waits quietly for its job.
 */
function closeWhenIdle(session: ServerHttp2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      if (open === 0 && !session.closed && !session.destroyed) session.close();
    }, idleMs);
    timer.unref();
  };
  arm();
  session.on("stream", (stream: ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
}

/** HTTP/2's counterpart of `requestTimeout`: a stream whose client is still sending after `ms` is reset. */
function resetIfRequestUnfinished(stream: ServerHttp2Stream, ms: number): void {
  const timer = setTimeout(() => {
    // OPEN: the client has not ended its side (half-closed remote means the whole request arrived).
    if (!stream.destroyed && stream.state.state === h2.NGHTTP2_STREAM_STATE_OPEN) stream.close(h2.NGHTTP2_CANCEL);
  }, ms);
  timer.unref();
  stream.once("close", () => clearTimeout(timer));
}
