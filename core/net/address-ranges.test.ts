import { describe, expect, it } from "vitest";
import { cidrContains, parseCidr, parseIp, specialRange, unmapIp } from "./address-ranges.ts";

const range = (text: string) => {
  const ip = parseIp(text);
  if (ip === undefined) throw new Error(`test address ${text} does not parse`);
  return specialRange(ip);
};

describe("address parsing", () => {
  it("reads dotted quads strictly and IPv6 in every spelling", () => {
    expect(parseIp("127.0.0.1")).toEqual({ family: 4, value: 0x7f000001n });
    for (const loose of ["0x7f.0.0.1", "127.1", "2130706433", "0177.0.0.1", "256.0.0.1", "1.2.3.4.5", ""]) expect(parseIp(loose)).toBeUndefined();
    expect(parseIp("::1")).toEqual({ family: 6, value: 1n });
    expect(parseIp("::")).toEqual({ family: 6, value: 0n });
    expect(parseIp("::ffff:127.0.0.1")).toEqual(parseIp("::ffff:7f00:1"));
    expect(parseIp("0:0:0:0:0:ffff:7f00:1")).toEqual(parseIp("::ffff:7f00:1"));
    expect(parseIp("fe80::1%eth0")).toEqual(parseIp("fe80::1"));
    expect(parseIp("2001:db8::1:2:3:4:5")).toEqual({ family: 6, value: 0x20010db8000000010002000300040005n });
    for (const bad of ["1::2::3", "12345::", "::g", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::1.2.3.4:1", "fe80::1%"]) expect(parseIp(bad)).toBeUndefined();
  });

  it("reads CIDRs, refusing host bits and widths past the family's", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ family: 4, base: 0x0a000000n, bits: 8 });
    expect(parseCidr("10.0.0.1")).toEqual({ family: 4, base: 0x0a000001n, bits: 32 });
    expect(parseCidr("fc00::/7")).toMatchObject({ family: 6, bits: 7 });
    for (const bad of ["10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/08", "10.0.0.0/", "fe80::1%eth0/128"]) expect(parseCidr(bad)).toBeUndefined();
    const net = parseCidr("192.168.0.0/16")!;
    expect(cidrContains(net, parseIp("192.168.255.1")!)).toBe(true);
    expect(cidrContains(net, parseIp("192.169.0.1")!)).toBe(false);
    expect(cidrContains(net, parseIp("::ffff:192.168.0.1")!)).toBe(false); // families differ: unmap first
    expect(cidrContains(net, unmapIp(parseIp("::ffff:192.168.0.1")!))).toBe(true);
  });
});

describe("special ranges", () => {
  it("names every non-public IPv4 range the brief lists, and passes public addresses", () => {
    expect(range("127.0.0.1")).toBe("loopback");
    expect(range("127.255.255.254")).toBe("loopback");
    expect(range("10.0.0.1")).toBe("private");
    expect(range("172.16.0.1")).toBe("private");
    expect(range("172.31.255.255")).toBe("private");
    expect(range("192.168.1.1")).toBe("private");
    expect(range("169.254.169.254")).toMatch(/link-local.*metadata/);
    expect(range("100.64.0.1")).toMatch(/CGNAT/);
    expect(range("100.100.100.200")).toMatch(/CGNAT/); // Alibaba's metadata service
    expect(range("0.0.0.0")).toMatch(/unspecified/);
    expect(range("224.0.0.1")).toBe("multicast");
    expect(range("255.255.255.255")).toMatch(/broadcast/);
    for (const pub of ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.253.255.255", "93.184.215.14"]) expect(range(pub)).toBeUndefined();
  });

  it("names the IPv6 ranges, and judges IPv6 forms that carry an IPv4 address by that address", () => {
    expect(range("::1")).toBe("loopback");
    expect(range("::")).toBe("unspecified");
    expect(range("fc00::1")).toMatch(/unique local/);
    expect(range("fd00:ec2::254")).toMatch(/unique local/); // AWS's IPv6 metadata service
    expect(range("fe80::1")).toBe("link-local");
    expect(range("ff02::1")).toBe("multicast");
    expect(range("::ffff:127.0.0.1")).toBe("loopback, as IPv4-mapped IPv6");
    expect(range("::ffff:169.254.169.254")).toMatch(/link-local.*IPv4-mapped/);
    expect(range("::ffff:10.1.2.3")).toMatch(/private/);
    expect(range("64:ff9b::7f00:1")).toMatch(/loopback, as NAT64/);
    expect(range("2002:7f00:1::")).toMatch(/loopback, as 6to4/);
    expect(range("::127.0.0.1")).toMatch(/IPv4-compatible/);
    expect(range("::ffff:8.8.8.8")).toBeUndefined();
    expect(range("2606:4700:4700::1111")).toBeUndefined();
    expect(range("2002:808:808::")).toBeUndefined();
  });
});
