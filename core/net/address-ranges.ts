/**
 * IP addresses and the ranges a tenant-named URL must never reach. Pure (no node:net), so the same
 * rules run in the API, the worker and anything else that takes a URL from a tenant.
 *
 * Both families are held as a bigint: IPv4 in 32 bits, IPv6 in 128.
 */
export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

export interface Cidr {
  family: 4 | 6;
  base: bigint;
  bits: number;
}

const V4_MAX = (1n << 32n) - 1n;

/** Parses a dotted-quad IPv4 or an IPv6 address (zone id allowed, `fe80::1%eth0`; brackets are not). Undefined when it is neither. */
export function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

/**
 * Strict dotted-quad: four decimal parts, 0-255, no leading zeros. The looser forms (`0x7f.1`,
 * `2130706433`, `0177.0.0.1`) are what the WHATWG URL parser turns into this one for http(s) hosts,
 * and are refused elsewhere (allow-list entries) rather than guessed at.
 */
function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  const zone = text.indexOf("%");
  const addr = zone === -1 ? text : text.slice(0, zone);
  if (zone !== -1 && zone === text.length - 1) return undefined;
  if (!/^[0-9a-fA-F:.]+$/.test(addr) || !addr.includes(":")) return undefined;
  const halves = addr.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  // A trailing dotted quad stands for the last two groups (`::ffff:127.0.0.1`).
  const words: bigint[] = [];
  const all = [...head, ...(halves.length === 2 ? ["::"] : []), ...tail];
  for (let i = 0; i < all.length; i++) {
    const g = all[i]!;
    if (g === "::") {
      words.push(-1n); // placeholder for the run of zeros
      continue;
    }
    if (g.includes(".")) {
      if (i !== all.length - 1) return undefined;
      const v4 = parseIpv4(g);
      if (v4 === undefined) return undefined;
      words.push(v4 >> 16n, v4 & 0xffffn);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    words.push(BigInt(parseInt(g, 16)));
  }
  const explicit = words.filter((w) => w !== -1n).length;
  const gap = words.indexOf(-1n);
  if (gap === -1 ? explicit !== 8 : explicit > 7) return undefined;
  const full = gap === -1 ? words : [...words.slice(0, gap), ...Array<bigint>(8 - explicit).fill(0n), ...words.slice(gap + 1)];
  return full.reduce((acc, w) => (acc << 16n) | w, 0n);
}

/** `10.0.0.0/8`, `fc00::/7`, or a single address (`/32`, `/128`). Host bits must be zero. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  const ip = parseIp(slash === -1 ? text : text.slice(0, slash));
  if (ip === undefined || text.includes("%")) return undefined;
  const width = ip.family === 4 ? 32 : 128;
  let bits = width;
  if (slash !== -1) {
    const b = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(b) || Number(b) > width) return undefined;
    bits = Number(b);
  }
  const hostMask = (1n << BigInt(width - bits)) - 1n;
  if ((ip.value & hostMask) !== 0n) return undefined;
  return { family: ip.family, base: ip.value, bits };
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const width = BigInt(ip.family === 4 ? 32 : 128);
  const shift = width - BigInt(cidr.bits);
  return ip.value >> shift === cidr.base >> shift;
}

/** The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for; any other address unchanged. */
export function unmapIp(ip: IpAddress): IpAddress {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & V4_MAX };
  return ip;
}

const cidr = (text: string): Cidr => {
  const c = parseCidr(text);
  if (c === undefined) throw new Error(`bad built-in range ${text}`);
  return c;
};

/** Ranges that are not the public internet, by what they are (IANA special-purpose registries, RFC 6890). */
const SPECIAL_V4: ReadonlyArray<readonly [Cidr, string]> = [
  [cidr("0.0.0.0/8"), "unspecified (this network)"],
  [cidr("10.0.0.0/8"), "private"],
  [cidr("100.64.0.0/10"), "shared address space (CGNAT)"],
  [cidr("127.0.0.0/8"), "loopback"],
  [cidr("169.254.0.0/16"), "link-local (incl. cloud metadata)"],
  [cidr("172.16.0.0/12"), "private"],
  [cidr("192.0.0.0/24"), "IETF protocol assignments"],
  [cidr("192.0.2.0/24"), "documentation"],
  [cidr("192.88.99.0/24"), "6to4 relay anycast"],
  [cidr("192.168.0.0/16"), "private"],
  [cidr("198.18.0.0/15"), "benchmarking"],
  [cidr("198.51.100.0/24"), "documentation"],
  [cidr("203.0.113.0/24"), "documentation"],
  [cidr("224.0.0.0/4"), "multicast"],
  [cidr("240.0.0.0/4"), "reserved (incl. broadcast)"],
];

const SPECIAL_V6: ReadonlyArray<readonly [Cidr, string]> = [
  [cidr("::/128"), "unspecified"],
  [cidr("::1/128"), "loopback"],
  // IPv4-compatible (deprecated): nothing legitimate lives here.
  [cidr("::/96"), "IPv4-compatible (deprecated)"],
  [cidr("64:ff9b:1::/48"), "local-use NAT64"],
  [cidr("100::/64"), "discard-only"],
  // Teredo's embedded address is obfuscated, so it cannot be checked: refused whole.
  [cidr("2001::/32"), "Teredo"],
  [cidr("2001:2::/48"), "benchmarking"],
  [cidr("2001:db8::/32"), "documentation"],
  [cidr("fc00::/7"), "unique local (private)"],
  [cidr("fe80::/10"), "link-local"],
  [cidr("fec0::/10"), "site-local (deprecated)"],
  [cidr("ff00::/8"), "multicast"],
];

/** IPv6 prefixes that carry an IPv4 address: that address decides. */
const EMBEDS_V4: ReadonlyArray<readonly [Cidr, string, (v: bigint) => bigint]> = [
  [cidr("::ffff:0:0/96"), "IPv4-mapped", (v) => v & V4_MAX],
  [cidr("::ffff:0:0:0/96"), "IPv4-translated", (v) => v & V4_MAX],
  [cidr("64:ff9b::/96"), "NAT64", (v) => v & V4_MAX],
  [cidr("2002::/16"), "6to4", (v) => (v >> 80n) & V4_MAX],
];

/**
 * What kind of non-public range `ip` is in (e.g. `"loopback"`), or undefined for a public address.
 * IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
 */
export function specialRange(ip: IpAddress): string | undefined {
  if (ip.family === 4) return SPECIAL_V4.find(([c]) => cidrContains(c, ip))?.[1];
  for (const [c, name, extract] of EMBEDS_V4) {
    if (!cidrContains(c, ip)) continue;
    const inner = specialRange({ family: 4, value: extract(ip.value) });
    return inner === undefined ? undefined : `${inner}, as ${name} IPv6`;
  }
  return SPECIAL_V6.find(([c]) => cidrContains(c, ip))?.[1];
}
