import { cidrContains, parseCidr, parseIp, specialRange, unmapIp, type Cidr, type IpAddress } from "./address-ranges.ts";

/**
 * Where tenant-named URLs may go: the one checker for model sources today and webhooks later. Pure:
 * it judges a URL's scheme, host name and literal address, and any address a name resolves to;
 * resolving (at submission and again at connect, against DNS rebinding) is `host-resolution.ts`'s.
 */

/** What the operator permits beyond the public internet. */
export interface AllowList {
  /** The entries as given (normalised), to hand to other processes in the same variable. */
  readonly entries: readonly string[];
  /** Host names trusted whatever they resolve to (and for plain http://). */
  readonly hosts: ReadonlySet<string>;
  /** Address ranges trusted even where private, loopback… (and for plain http://). */
  readonly cidrs: readonly Cidr[];
  /** `s3://bucket` entries: buckets the operator's own credentials may be used for. */
  readonly s3Buckets: ReadonlySet<string>;
}

export const EMPTY_ALLOW_LIST: AllowList = { entries: [], hosts: new Set(), cidrs: [], s3Buckets: new Set() };

export interface UrlPolicy {
  allow: AllowList;
  /** Schemes accepted towards any public address, as `URL.protocol` spells them: `["https:"]`. */
  schemes: readonly string[];
  /** Schemes accepted only towards allow-listed hosts and ranges: `["http:"]`. Default none. */
  allowListedSchemes?: readonly string[];
  /** The variable operators set the allow-list with, named in refusals. */
  allowListName: string;
}

export type Refusal = { ok: false; reason: string };

/**
 * `resolve: true` means the host is a name whose addresses must each pass `checkAddress`
 * (`allowListedOnly` says whether only allow-listed ranges will do, for plain http://).
 */
export type UrlVerdict = { ok: true; resolve: false } | { ok: true; resolve: true; host: string; allowListedOnly: boolean } | Refusal;

/** Names that lead inside the host or its network whatever DNS says: refused unless allow-listed by name. */
const LOCAL_NAMES: ReadonlyMap<string, string> = new Map([
  ["localhost", "the loopback host"],
  ["localhost.localdomain", "the loopback host"],
  ["ip6-localhost", "the loopback host"],
  ["ip6-loopback", "the loopback host"],
  ["metadata", "a cloud metadata service"],
  ["metadata.google.internal", "a cloud metadata service"],
  ["metadata.goog", "a cloud metadata service"],
  ["instance-data", "a cloud metadata service"],
  ["instance-data.ec2.internal", "a cloud metadata service"],
]);
/** Special-use and private-use domains (RFC 6761, 6762, 8375; ICANN's .internal). */
const LOCAL_SUFFIXES = [".localhost", ".localdomain", ".local", ".internal", ".home.arpa"];

const LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
const HOST_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
const S3_BUCKET = /^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/;

/** Lower case, no trailing dot, no IPv6 brackets: the form host names are compared in. */
export function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

/**
 * Parses an allow-list: comma-separated `s3://bucket`, host names, CIDRs and single addresses.
 * Every bad entry is reported (for a start-up error naming the variable).
 */
export function parseAllowList(text: string): { ok: true; allow: AllowList } | { ok: false; errors: string[] } {
  const entries: string[] = [];
  const hosts = new Set<string>();
  const cidrs: Cidr[] = [];
  const s3Buckets = new Set<string>();
  const errors: string[] = [];
  for (const raw of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (raw.toLowerCase().startsWith("s3://")) {
      const bucket = raw.slice(5).replace(/\/$/, "");
      if (!S3_BUCKET.test(bucket)) errors.push(`${raw}: not an s3://bucket (a bucket name, nothing after it)`);
      else {
        s3Buckets.add(bucket);
        entries.push(`s3://${bucket}`);
      }
      continue;
    }
    const asCidr = parseCidr(normalizeHost(raw));
    if (asCidr !== undefined) {
      cidrs.push(asCidr);
      entries.push(raw);
      continue;
    }
    const host = normalizeHost(raw);
    if (!raw.includes("/") && parseIp(host) === undefined && !endsInNumber(host) && HOST_NAME.test(host)) {
      hosts.add(host);
      entries.push(host);
      continue;
    }
    errors.push(`${raw}: not an s3://bucket, a host name, an IP address or a CIDR (with host bits zero)`);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, allow: { entries, hosts, cidrs, s3Buckets } };
}

/** A host the URL parser would read as an IPv4 address (`0x7f.1`, `2130706433`): not a name (WHATWG "ends in a number"). */
function endsInNumber(host: string): boolean {
  const last = host.split(".").at(-1) ?? "";
  return /^(0x[0-9a-f]*|[0-9]+)$/.test(last);
}

/** Judges a URL before any connection: scheme, host name, literal address. */
export function checkUrl(url: URL, policy: UrlPolicy): UrlVerdict {
  const anywhere = policy.schemes.includes(url.protocol);
  const allowListedOnly = !anywhere && (policy.allowListedSchemes ?? []).includes(url.protocol);
  if (!anywhere && !allowListedOnly) {
    const accepted = [...policy.schemes, ...(policy.allowListedSchemes ?? []).map((s) => `${s} (allow-listed hosts only)`)];
    return refuse(`${url.protocol}// URLs are not accepted (accepted: ${accepted.join(", ")})`);
  }
  const host = normalizeHost(url.hostname);
  if (host === "") return refuse("the URL names no host");
  if (policy.allow.hosts.has(host)) return { ok: true, resolve: false };
  const ip = parseIp(host);
  if (ip !== undefined) {
    const verdict = checkIp(ip, host, policy, allowListedOnly);
    return verdict.ok ? { ok: true, resolve: false } : verdict;
  }
  if (!HOST_NAME.test(host)) return refuse(`${host} is not a valid host name`);
  const local = LOCAL_NAMES.get(host) ?? (LOCAL_SUFFIXES.some((s) => host.endsWith(s)) ? "a local or private-use name" : undefined);
  if (local !== undefined) return refuse(`${host} is ${local}; not reachable unless ${policy.allowListName} lists it`);
  return { ok: true, resolve: true, host, allowListedOnly };
}

/**
 * Judges one address a host name resolved to (or a socket is about to connect to). `allowListedOnly`
 * comes from `checkUrl`: plain http:// may only reach allow-listed ranges.
 */
export function checkAddress(address: string, policy: UrlPolicy, allowListedOnly: boolean): { ok: true } | Refusal {
  const ip = parseIp(address);
  if (ip === undefined) return refuse(`${address} is not an IP address`);
  return checkIp(ip, address, policy, allowListedOnly);
}

function checkIp(ip: IpAddress, shown: string, policy: UrlPolicy, allowListedOnly: boolean): { ok: true } | Refusal {
  const plain = unmapIp(ip);
  if (policy.allow.cidrs.some((c) => cidrContains(c, plain) || cidrContains(c, ip))) return { ok: true };
  if (allowListedOnly) return refuse(`plain http:// is accepted only for hosts and ranges in ${policy.allowListName} (${shown} is not)`);
  const range = specialRange(ip);
  if (range !== undefined) return refuse(`${shown} is a ${range} address; not reachable unless ${policy.allowListName} permits it`);
  return { ok: true };
}

function refuse(reason: string): Refusal {
  return { ok: false, reason };
}
