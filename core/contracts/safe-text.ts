import { z } from "zod";

/*
 * Strings a tenant sends that Hearth stores or looks up in Postgres. Postgres refuses NUL in text
 * (and a lone surrogate cannot be encoded as UTF-8), so these are refused at the door with a 400
 * naming the field, instead of failing as a 500 in the database.
 */

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` holds a NUL character or a lone UTF-16 surrogate. */
export const hasUnstorableChars = (s: string): boolean => s.includes("\u0000") || LONE_SURROGATE.test(s);

/** A name or label: 1..`max` characters, no NUL, no lone surrogate. */
export const safeText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !hasUnstorableChars(s), "must not contain NUL characters or lone surrogates");

/**
 * An id Hearth issued (tenant, key, endpoint, job, worker): printable ASCII without spaces. A path
 * id outside this shape cannot exist, so the routes answer 404 for it (see route-kit).
 */
export const resourceId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[\x21-\x7e]+$/, "is not an id Hearth issued");

/** How deep a JSON value may nest (objects and arrays), documented in the README. */
export const MAX_JSON_DEPTH = 64;

/**
 * The nesting depth of a parsed JSON value, counted without recursion (a 12 KB body can nest 6,000
 * arrays; recursing over it, as `JSON.stringify` does later, overflows the stack). Stops counting
 * at `limit + 1`.
 */
export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    const d = depth + 1;
    if (d > deepest) deepest = d;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (child !== null && typeof child === "object") stack.push([child, d]);
  }
  return deepest;
}

/** A zod refinement for a whole body: refuses JSON nested deeper than MAX_JSON_DEPTH. */
export const depthMessage = `nests deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`;
export const withinDepth = (v: unknown) => jsonDepth(v) <= MAX_JSON_DEPTH;
