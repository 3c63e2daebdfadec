/**
 * Built-in PII detection: e-mail addresses, phone numbers, card numbers (Luhn-checked) and
 * API-key-like secrets. Hand-written scanners, not regular expressions: each character is looked
 * at a bounded number of times, so a hostile input (5 MB of one character, NUL, lone surrogates)
 * costs linear time. Pure.
 */

export type PiiRule = "email" | "phone" | "card" | "secret";

/** A match: `[start, end)` in UTF-16 code units of the scanned text. */
export interface PiiFinding {
  rule: PiiRule;
  start: number;
  end: number;
}

/** The longest local part (RFC 5321) and domain looked at around one `@`. */
const MAX_LOCAL = 64;
const MAX_DOMAIN = 253;
/** A token this long, of mixed case and digits, with at least this much entropy per character, is taken for a secret. */
const ENTROPY_MIN_LENGTH = 32;
const ENTROPY_MIN_BITS = 4.2;

const isDigit = (c: number) => c >= 48 && c <= 57;
const isUpper = (c: number) => c >= 65 && c <= 90;
const isLower = (c: number) => c >= 97 && c <= 122;
const isAlnum = (c: number) => isDigit(c) || isUpper(c) || isLower(c);
/** `.` `_` `%` `+` `-` besides letters and digits. */
const isLocalChar = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;
const isDomainChar = (c: number) => isAlnum(c) || c === 45 || c === 46;
/** Characters of key-like tokens: letters, digits, `_` `-` and base64's `+` `/` `=`. */
export const isTokenChar = (c: number) => isAlnum(c) || c === 95 || c === 45 || c === 43 || c === 47 || c === 61;

/** Every finding in `text`, sorted by start, none overlapping (the earlier, then the longer, wins). */
export function scanPii(text: string): PiiFinding[] {
  const found: PiiFinding[] = [];
  scanEmails(text, found);
  scanNumbers(text, found);
  scanTokens(text, found);
  if (found.length < 2) return found;
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: PiiFinding[] = [];
  let end = -1;
  for (const f of found) {
    if (f.start < end) continue;
    kept.push(f);
    end = f.end;
  }
  return kept;
}

/** `text` with each finding replaced by `[REDACTED:<rule>]`. */
export function redact(text: string, findings: readonly PiiFinding[]): string {
  if (findings.length === 0) return text;
  let out = "";
  let at = 0;
  for (const f of findings) {
    out += text.slice(at, f.start) + `[REDACTED:${f.rule}]`;
    at = f.end;
  }
  return out + text.slice(at);
}

function scanEmails(text: string, found: PiiFinding[]): void {
  for (let at = text.indexOf("@"); at !== -1; at = text.indexOf("@", at + 1)) {
    let start = at;
    while (start > 0 && at - start < MAX_LOCAL && isLocalChar(text.charCodeAt(start - 1))) start--;
    while (start < at && text.charCodeAt(start) === 46) start++; // a local part does not start with a dot
    if (start === at) continue;
    let end = at + 1;
    while (end < text.length && end - at - 1 < MAX_DOMAIN && isDomainChar(text.charCodeAt(end))) end++;
    // A sentence's full stop or a dash after the address is not part of it.
    while (end > at + 1 && (text.charCodeAt(end - 1) === 46 || text.charCodeAt(end - 1) === 45)) end--;
    // The last dot of the domain, looked for within it only (lastIndexOf would run back through the whole text).
    let dot = end - 1;
    while (dot > at + 1 && text.charCodeAt(dot) !== 46) dot--;
    if (dot <= at + 1 || end - dot - 1 < 2) continue;
    let tld = true;
    for (let i = dot + 1; i < end && tld; i++) tld = isUpper(text.charCodeAt(i)) || isLower(text.charCodeAt(i));
    if (tld) found.push({ rule: "email", start, end });
  }
}

/**
 * Runs of digit groups joined by single separators (` `, `-`, `.`, parentheses, a leading `+`),
 * each read once. A run is a card when it has 13–19 digits, only ` `/`-` between groups of 3 or
 * more, and passes the Luhn check; a phone number when it starts with `+` and has 8–15 digits, or
 * has 10–11 digits in 3 or more groups of at most 4 (`555-123-4567`, `(555) 123-4567`).
 */
function scanNumbers(text: string, found: PiiFinding[]): void {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const opens = isDigit(c) || ((c === 43 || c === 40) && i + 1 < n && isDigit(text.charCodeAt(i + 1)));
    if (!opens || (i > 0 && isAlnum(text.charCodeAt(i - 1)))) {
      i++;
      continue;
    }
    const plus = c === 43;
    let j = plus ? i + 1 : i;
    let digits = 0;
    let groups = 0;
    let minGroup = Infinity;
    let maxGroup = 0;
    let otherSeparators = false; // `.` or parentheses: not a card's
    let end = j;
    let luhnDigits = "";
    for (;;) {
      if (j < n && text.charCodeAt(j) === 40 && j + 1 < n && isDigit(text.charCodeAt(j + 1))) {
        otherSeparators = true;
        j++;
      }
      if (j >= n || !isDigit(text.charCodeAt(j))) break;
      const g = j;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      const len = j - g;
      digits += len;
      groups++;
      if (len < minGroup) minGroup = len;
      if (len > maxGroup) maxGroup = len;
      if (digits <= 19) luhnDigits += text.slice(g, j);
      end = j;
      let s = text.charCodeAt(j);
      if (s === 41) {
        otherSeparators = true;
        j++;
        s = text.charCodeAt(j);
      }
      if ((s === 32 || s === 45 || s === 46) && j + 1 < n && (isDigit(text.charCodeAt(j + 1)) || text.charCodeAt(j + 1) === 40)) {
        if (s === 46) otherSeparators = true;
        j++;
        continue;
      }
      if (j > end && j < n && isDigit(text.charCodeAt(j))) continue; // `(555)123`
      break;
    }
    const bounded = end >= n || !isAlnum(text.charCodeAt(end));
    if (bounded && digits > 0) {
      const card = !plus && !otherSeparators && digits >= 13 && digits <= 19 && (groups === 1 || minGroup >= 3) && luhn(luhnDigits) && !/^0+$/.test(luhnDigits);
      const phone = !card && ((plus && digits >= 8 && digits <= 15) || (digits >= 10 && digits <= 11 && groups >= 3 && maxGroup <= 4));
      if (card) found.push({ rule: "card", start: i, end });
      else if (phone) found.push({ rule: "phone", start: i, end });
    }
    i = Math.max(i + 1, end);
  }
}

/** The Luhn checksum of a string of digits. */
export function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** Known key prefixes and the least number of token characters that must follow each. */
const KEY_PREFIXES: readonly (readonly [string, number])[] = [
  ["sk-", 20], // OpenAI, Anthropic (sk-ant-…), sk-proj-…
  ["sk_live_", 16], // Stripe
  ["sk_test_", 16],
  ["rk_live_", 16],
  ["ghp_", 30], // GitHub
  ["gho_", 30],
  ["ghu_", 30],
  ["ghs_", 30],
  ["ghr_", 30],
  ["github_pat_", 22],
  ["glpat-", 20], // GitLab
  ["xoxb-", 10], // Slack
  ["xoxp-", 10],
  ["xoxa-", 10],
  ["xoxr-", 10],
  ["xoxs-", 10],
  ["hf_", 30], // Hugging Face
  ["AIza", 35], // Google
];

function scanTokens(text: string, found: PiiFinding[]): void {
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isTokenChar(text.charCodeAt(i))) {
      i++;
      continue;
    }
    let end = i;
    while (end < n && isTokenChar(text.charCodeAt(end))) end++;
    if (end - i >= 12 && isSecret(text, i, end)) found.push({ rule: "secret", start: i, end });
    i = end;
  }
}

function isSecret(text: string, start: number, end: number): boolean {
  const len = end - start;
  for (const [prefix, rest] of KEY_PREFIXES) {
    if (len >= prefix.length + rest && text.startsWith(prefix, start)) return true;
  }
  // AWS access key ids: AKIA (long-term) or ASIA (temporary) and 16 upper-case letters or digits.
  if (len === 20 && (text.startsWith("AKIA", start) || text.startsWith("ASIA", start))) {
    let ok = true;
    for (let k = start + 4; k < end && ok; k++) ok = isUpper(text.charCodeAt(k)) || isDigit(text.charCodeAt(k));
    if (ok) return true;
  }
  return len >= ENTROPY_MIN_LENGTH && highEntropy(text, start, end);
}

/** Mixed case and digits, and Shannon entropy of at least ENTROPY_MIN_BITS per character: random, not words or hex. */
function highEntropy(text: string, start: number, end: number): boolean {
  const counts = new Uint32Array(128);
  let upper = 0;
  let lower = 0;
  let digit = 0;
  for (let k = start; k < end; k++) {
    const c = text.charCodeAt(k);
    counts[c]!++;
    if (isUpper(c)) upper++;
    else if (isLower(c)) lower++;
    else if (isDigit(c)) digit++;
  }
  if (upper < 2 || lower < 2 || digit < 2) return false;
  const len = end - start;
  let bits = 0;
  for (const count of counts) {
    if (count === 0) continue;
    const p = count / len;
    bits -= p * Math.log2(p);
  }
  return bits >= ENTROPY_MIN_BITS;
}
