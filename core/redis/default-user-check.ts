import { Redis } from "ioredis";

/**
 * What a connection without credentials gets from this Redis server: `open` when the `default`
 * user is on without a password (anyone who reaches the port may run commands as it: read and
 * write every tenant's jobs, or reach Redis through a tenant's SSRF), `open-limited` when it is on
 * without a password but refused PING (so its rights were narrowed), `closed` when Redis asks for
 * authentication, `unknown` when the probe could not tell (unreachable, timed out).
 */
export type DefaultUserState = "open" | "open-limited" | "closed" | "unknown";

export interface DefaultUserProbe {
  state: DefaultUserState;
  /** The server's reply or the connection error, for `unknown` and `open-limited`. */
  detail?: string;
}

/** `url` without its user and password: a connection as `default`, as an intruder's would be. */
export function withoutCredentials(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  return u.href;
}

/** Reads the reply to one PING sent without credentials. */
export function classifyProbeReply(reply: { ok: true; value: unknown } | { ok: false; message: string }): DefaultUserProbe {
  if (reply.ok) return reply.value === "PONG" ? { state: "open" } : { state: "unknown", detail: String(reply.value) };
  // NOAUTH: default is off or has a password (requirepass). NOPERM: default is on, passwordless, with fewer rights.
  if (/^NOAUTH\b|^WRONGPASS\b/.test(reply.message)) return { state: "closed" };
  if (/^NOPERM\b/.test(reply.message)) return { state: "open-limited", detail: reply.message };
  return { state: "unknown", detail: reply.message };
}

/**
 * Connects to the server of `url` without credentials and sends PING. Needs no rights of its own
 * (ACL GETUSER would need admin rights the API and workers do not have). Never rejects.
 */
export async function probeDefaultUser(url: string, timeoutMs = 5000): Promise<DefaultUserProbe> {
  const probe = new Redis(withoutCredentials(url), {
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  });
  // connect() rejects with a bare "Connection is closed."; the socket's own error says why.
  let socketError: string | undefined;
  probe.on("error", (err: Error) => (socketError ??= err.message));
  try {
    await probe.connect();
    return classifyProbeReply({ ok: true, value: await probe.ping() });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return classifyProbeReply({ ok: false, message: /^NOAUTH|^NOPERM|^WRONGPASS/.test(message) ? message : (socketError ?? message) });
  } finally {
    probe.disconnect();
  }
}

/** The start-up warning for a probe's outcome; undefined when the default user is closed. */
export function defaultUserWarning(probe: DefaultUserProbe): string | undefined {
  const fix = "disable it (ACL SETUSER default off, or `user default off` in redis.conf / an ACL file) and give each Hearth process a user of its own (README, Production)";
  switch (probe.state) {
    case "closed":
      return undefined;
    case "open":
      return `Redis' default user is on without a password: anything that reaches Redis can read and change every tenant's jobs; ${fix}`;
    case "open-limited":
      return `Redis' default user is on without a password (with limited rights: ${probe.detail}); ${fix}`;
    case "unknown":
      return `could not check whether Redis' default user is open: ${probe.detail ?? "no answer"}`;
  }
}

/**
 * Logs `defaultUserWarning` once for the server of `url`, if any. Never rejects; bounded by the
 * probe's timeout, so it may be awaited, but need not be.
 */
export async function warnIfRedisDefaultUserOpen(url: string, log: (msg: string) => void): Promise<void> {
  const warning = defaultUserWarning(await probeDefaultUser(url));
  if (warning !== undefined) log(warning);
}
