import { describe, expect, it } from "vitest";
import { planRanges, rangeHeader, totalFromContentRange } from "./range-plan.ts";

describe("planRanges", () => {
  it("splits into equal parts with a shorter last one, covering every byte once", () => {
    expect(planRanges(10, 4)).toEqual([{ start: 0, end: 3 }, { start: 4, end: 7 }, { start: 8, end: 9 }]);
    expect(planRanges(8, 4)).toEqual([{ start: 0, end: 3 }, { start: 4, end: 7 }]);
    expect(planRanges(3, 4)).toEqual([{ start: 0, end: 2 }]);
    expect(planRanges(1, 1)).toEqual([{ start: 0, end: 0 }]);
  });

  it("has no ranges for an empty object", () => {
    expect(planRanges(0, 4)).toEqual([]);
  });

  it("covers a large object exactly", () => {
    const size = 256 * 1024 * 1024 + 5;
    const ranges = planRanges(size, 8 * 1024 * 1024);
    expect(ranges).toHaveLength(33);
    expect(ranges.at(-1)).toEqual({ start: 256 * 1024 * 1024, end: size - 1 });
    expect(ranges.reduce((n, r) => n + r.end - r.start + 1, 0)).toBe(size);
  });

  it("rejects sizes that are not non-negative integers and parts smaller than a byte", () => {
    expect(() => planRanges(-1, 4)).toThrow(RangeError);
    expect(() => planRanges(1.5, 4)).toThrow(RangeError);
    expect(() => planRanges(10, 0)).toThrow(RangeError);
  });
});

describe("range headers", () => {
  it("formats a Range header and reads the total of a Content-Range", () => {
    expect(rangeHeader({ start: 0, end: 99 })).toBe("bytes=0-99");
    expect(totalFromContentRange("bytes 0-99/1234")).toBe(1234);
    expect(totalFromContentRange("bytes 0-99/*")).toBeUndefined();
    expect(totalFromContentRange("garbage")).toBeUndefined();
    expect(totalFromContentRange(undefined)).toBeUndefined();
  });
});
