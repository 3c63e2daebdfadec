import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { dirname, join } from "node:path";

/** The unprivileged user engine processes run as (spawned with its uid and gid, no supplementary groups). */
export interface EngineUser {
  name: string;
  uid: number;
  gid: number;
}

/** HEARTH_ENGINE_USER cannot be used: no such user, or the worker may not switch to it. */
export class EngineUserError extends Error {
  readonly code = "ENGINE_USER_INVALID";
}

/** Default HEARTH_ENGINE_USER: exists on every Debian, Ubuntu, Alpine and RHEL image, owns nothing. */
export const DEFAULT_ENGINE_USER = "nobody";

/** `name`'s uid and gid from passwd(5) text, or undefined. A numeric `name` matches a uid. */
export function findPasswdUser(passwd: string, name: string): EngineUser | undefined {
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === undefined || uid === undefined || gid === undefined || line.startsWith("#")) continue;
    if (user === name || (/^\d+$/.test(name) && uid === name)) {
      const u = Number(uid);
      const g = Number(gid);
      if (Number.isInteger(u) && Number.isInteger(g)) return { name: user, uid: u, gid: g };
    }
  }
  return undefined;
}

export interface ResolveEngineUserOptions {
  /** This process's uid. Default `process.getuid()`. */
  currentUid?: number;
  /** passwd(5) text. Default: /etc/passwd, then `id` (users from LDAP and other NSS sources). */
  lookup?: (name: string) => EngineUser | undefined;
}

/**
 * Whom to run engines as. A worker running as root runs them as `configured` (default `nobody`)
 * and fails, naming the variable, when that user does not exist. A worker that is not root cannot
 * switch users: engines run as the worker's own user, and naming another user is an error.
 * Returns undefined when no switch is needed.
 */
export function resolveEngineUser(configured: string | undefined, options: ResolveEngineUserOptions = {}): EngineUser | undefined {
  const currentUid = options.currentUid ?? process.getuid?.() ?? -1;
  const lookup = options.lookup ?? lookupSystemUser;
  const name = configured ?? DEFAULT_ENGINE_USER;
  if (currentUid !== 0) {
    if (configured === undefined) return undefined;
    const user = lookup(configured);
    if (user === undefined) throw new EngineUserError(`HEARTH_ENGINE_USER=${configured}: no such user on this host`);
    if (user.uid === currentUid) return undefined;
    throw new EngineUserError(`HEARTH_ENGINE_USER=${configured}: the worker runs as uid ${currentUid}, not root, so it cannot start engines as another user; unset it or run the worker as root`);
  }
  const user = lookup(name);
  if (user === undefined) {
    throw new EngineUserError(`HEARTH_ENGINE_USER=${name}: no such user on this host; create it (useradd --system --no-create-home ${name}) or name an existing unprivileged user`);
  }
  return user;
}

function lookupSystemUser(name: string): EngineUser | undefined {
  try {
    const found = findPasswdUser(readFileSync("/etc/passwd", "utf8"), name);
    if (found) return found;
  } catch {
    // no /etc/passwd (a distroless image): ask `id`
  }
  try {
    const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
    const uid = id("-u");
    const gid = id("-g");
    return Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether mode bits let `user` (its uid and primary gid: engines are spawned without supplementary
 * groups) do `want` ("r", "x" or "rx") on a file with `st`'s owner and mode. As the kernel does,
 * only the owner's bits count for the owner and only the group's for the group.
 */
export function modePermits(st: { mode: number; uid: number; gid: number }, user: { uid: number; gid: number }, want: "r" | "x" | "rx"): boolean {
  if (user.uid === 0) return true;
  const bits = st.uid === user.uid ? (st.mode >> 6) & 7 : st.gid === user.gid ? (st.mode >> 3) & 7 : st.mode & 7;
  return (!want.includes("r") || (bits & 4) !== 0) && (!want.includes("x") || (bits & 1) !== 0);
}

/** Files checked inside a model directory before giving up on finding one the engine cannot read. */
const MAX_CHECKED = 10_000;

/**
 * Rejects with an EngineUserError naming the first path `user` could not reach: a directory on the
 * way it may not enter, the file it may not read, or (for a directory model, a Hugging Face
 * checkpoint) an entry inside it. An engine that cannot open its model only crash-loops, long
 * after the cause could have been said. Mode bits only (no ACLs, no SELinux).
 */
export async function assertReadableBy(path: string, user: EngineUser): Promise<void> {
  const fail = (p: string, what: string, st: { mode: number; uid: number; gid: number }) => {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
    throw new EngineUserError(`${p} is not ${what} by the engine user ${user.name} (uid ${user.uid}, gid ${user.gid}): mode ${mode}, owner ${st.uid}:${st.gid}`);
  };
  const real = await realpath(path);
  for (const p of new Set([...ancestors(path), ...ancestors(real)])) {
    const st = await stat(p);
    if (!modePermits(st, user, "x")) fail(p, "searchable", st);
  }
  let checked = 0;
  const walk = async (p: string): Promise<void> => {
    if (++checked > MAX_CHECKED) return;
    const st = await stat(p);
    if (!st.isDirectory()) {
      if (!modePermits(st, user, "r")) fail(p, "readable", st);
      return;
    }
    if (!modePermits(st, user, "rx")) fail(p, "listable", st);
    for (const name of await readdir(p)) await walk(join(p, name));
  };
  await walk(real);
}

/** The directories above `path`, from the root down. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    out.unshift(dir);
    if (dirname(dir) === dir) return out;
  }
}
