import { createHash } from "node:crypto";
import type { RedisKeys } from "../queue/keys.ts";

/**
 * The Redis ACL user of one worker: its name and its rules, pure. A worker may touch only its
 * endpoint's keys (`<prefix>:ep.<endpoint>:*`, BullMQ's and Hearth's alike, see RedisKeys) and
 * channels of the same shape, with the commands BullMQ's Worker and Hearth's worker runtime use.
 * The scheduler creates it (scheduler/worker-redis-users.ts); the README's production section
 * lists the same rules.
 */

/** Every worker user's name starts with this. */
export const WORKER_USER_PREFIX = "hearth-w:";

/**
 * The commands, by category and then by exception, in ACL SETUSER order (later rules win).
 *
 * - Categories: BullMQ's Lua scripts call reads and writes of every data type; the worker blocks
 *   (BZPOPMIN on the queue's marker), runs scripts (EVALSHA, EVAL on NOSCRIPT), publishes job events
 *   and subscribes to its control channel, names its connections (CLIENT SETNAME) and uses MULTI.
 * - `-@dangerous -@admin`: FLUSHALL/FLUSHDB (not bound by key patterns), KEYS, SORT … BY/GET
 *   (reads keys it does not name), CONFIG, CLIENT LIST/KILL, DEBUG, MONITOR, ACL.
 * - Commands that name no key yet reveal or touch the whole keyspace, which key patterns cannot
 *   stop: SCAN and RANDOMKEY (other tenants' key names: job ids), DBSIZE, PUBSUB CHANNELS/NUMSUB
 *   (channel names), FUNCTION (FLUSH/DELETE/LOAD are server-wide), FCALL, SCRIPT FLUSH/KILL/DEBUG
 *   (other clients' scripts), CLIENT TRACKING/CACHING (broadcast invalidations name other keys).
 * - `+info`: ioredis' ready check and BullMQ's Redis version check both send INFO (categorised
 *   dangerous); refused, BullMQ's Worker does not start. INFO tells server statistics, no key.
 * - `+time`: the heartbeat script dates a beat with Redis' own clock.
 */
export const WORKER_COMMAND_RULES: readonly string[] = [
  "-@all",
  "+@read",
  "+@write",
  "+@scripting",
  "+@pubsub",
  "+@blocking",
  "+@connection",
  "+@transaction",
  "-@dangerous",
  "-@admin",
  "-scan",
  "-randomkey",
  "-dbsize",
  "-pubsub",
  "-function",
  "-fcall",
  "-fcall_ro",
  "-script|flush",
  "-script|kill",
  "-script|debug",
  "-client|tracking",
  "-client|caching",
  "-client|getredir",
  "-client|trackinginfo",
  "+info",
  "+time",
];

/** A short, stable tag of a key prefix, so that installations sharing one Redis never touch each other's users. */
export function prefixTag(redisPrefix: string): string {
  return createHash("sha256").update(redisPrefix).digest("hex").slice(0, 10);
}

export interface WorkerUserName {
  tag: string;
  endpointId: string;
  workerId: string;
}

/** `hearth-w:<prefix tag>:<endpoint>:<worker>`: unique per worker, and tells whose it is without asking Redis. */
export function workerUserName(redisPrefix: string, endpointId: string, workerId: string): string {
  // ':' is the separator (endpoint ids cannot hold one: BullMQ forbids it in queue names); ACL
  // user names cannot hold spaces.
  if (/[\s:]/.test(endpointId) || /\s/.test(workerId) || endpointId === "" || workerId === "") {
    throw new Error(`cannot name a Redis user for endpoint ${JSON.stringify(endpointId)}, worker ${JSON.stringify(workerId)}`);
  }
  return `${WORKER_USER_PREFIX}${prefixTag(redisPrefix)}:${endpointId}:${workerId}`;
}

/** The parts of a worker user's name; undefined for any other user. */
export function parseWorkerUserName(name: string): WorkerUserName | undefined {
  if (!name.startsWith(WORKER_USER_PREFIX)) return undefined;
  const rest = name.slice(WORKER_USER_PREFIX.length);
  const first = rest.indexOf(":");
  const second = first < 0 ? -1 : rest.indexOf(":", first + 1);
  if (first <= 0 || second <= first + 1 || second === rest.length - 1) return undefined;
  return { tag: rest.slice(0, first), endpointId: rest.slice(first + 1, second), workerId: rest.slice(second + 1) };
}

/** `s` as a literal inside a Redis glob: `*`, `?`, `[`, `]` and `\` escaped. */
export function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * ACL SETUSER arguments after the user name: reset (a re-run replaces, never widens, an existing
 * user), enabled, one password, the endpoint's keys and channels, write-only the offload request
 * list, the commands.
 */
export function workerAclRules(keys: RedisKeys, endpointId: string, password: string): string[] {
  if (password.length < 32 || /\s/.test(password)) throw new Error("a worker's Redis password must be at least 32 characters without spaces");
  const pattern = `${globLiteral(keys.queuePrefix(endpointId))}:*`;
  // resetchannels too: `reset` leaves every channel open where acl-pubsub-default is allchannels.
  // `%W~`: the offload request list is shared by every endpoint, so workers may push to it but never read it.
  return ["reset", "resetkeys", "resetchannels", "on", `>${password}`, `~${pattern}`, `%W~${globLiteral(keys.offloadRequests())}`, `&${pattern}`, ...WORKER_COMMAND_RULES];
}

/** `redisUrl` (the scheduler's: host, port, TLS, database) with the worker's user and password instead of its own. */
export function workerRedisUrl(redisUrl: string, username: string, password: string): string {
  const url = new URL(redisUrl);
  // The URL setters percent-encode (':' in the name becomes %3A); ioredis decodes both parts.
  url.username = username;
  url.password = password;
  return url.href;
}
