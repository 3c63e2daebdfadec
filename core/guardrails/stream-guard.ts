import type { GuardrailAction, GuardrailRule } from "../contracts/guardrails.ts";
import { isTokenChar, redact, scanPii, type PiiFinding } from "./pii-scan.ts";
import { checkText, type RuleCounts } from "./json-guard.ts";

/**
 * The most characters of a trailing token held back when nothing in it matches yet: an e-mail's
 * local part is at most 64 (the scanner looks no further back from an `@`), and a key is recognised
 * from its first 32–40 characters.
 */
const MAX_TOKEN_HOLD = 64;
/**
 * The most characters held back for a match still growing at the end: an e-mail address fits, and
 * a longer secret is redacted up to here and its rest dropped as it comes. Bounds the text each
 * chunk rescans, so a stream costs linear time whatever it holds.
 */
const MAX_MATCH_HOLD = 512;
/** The most characters of a trailing run of digits and separators held back: a card with separators is 37, a formatted phone number less. */
const MAX_NUMBER_HOLD = 64;

/**
 * Characters some pattern may contain besides the number separators: letters, digits and
 * `_ - + / = . % @ ( )` (keys, e-mail addresses, phone numbers). A trailing run of anything else
 * (spaces, other punctuation, non-ASCII text) joins nothing that comes after it.
 */
const isPatternChar = (c: number) => isTokenChar(c) || c === 46 || c === 37 || c === 64 || c === 40 || c === 41;
const isDigit = (c: number) => c >= 48 && c <= 57;
/** Digits and what may join digit groups (space, `-`, `.`, parentheses, `+`). */
const isNumberChar = (c: number) => isDigit(c) || c === 32 || c === 45 || c === 46 || c === 40 || c === 41 || c === 43;

/**
 * Where text that may still grow can be cut: before the trailing token (any pattern may continue
 * it: `john@exa` + `mple.com`) and before the digit groups that precede it (`4111 1111 ` + `1111 1111`).
 * Everything before the cut can be checked and written now.
 */
export function safeCut(text: string): number {
  let i = text.length;
  while (i > 0 && isPatternChar(text.charCodeAt(i - 1)) && text.length - i < MAX_TOKEN_HOLD) i--;
  let j = i;
  let digits = false;
  while (j > 0 && isNumberChar(text.charCodeAt(j - 1)) && i - j < MAX_NUMBER_HOLD) {
    if (isDigit(text.charCodeAt(j - 1))) digits = true;
    j--;
  }
  if (!digits) {
    // The held token itself may be the start of a number: then the groups before it count too.
    for (let k = i; k < text.length && !digits; k++) digits = isDigit(text.charCodeAt(k));
    if (!digits) return i;
  }
  // Separators before the first group join nothing yet: they can be written.
  while (j < i && (text.charCodeAt(j) === 32 || text.charCodeAt(j) === 45 || text.charCodeAt(j) === 46)) j++;
  return j;
}

/** One stream of text (a choice's `delta.content`, a handler's string chunks) checked as it grows. */
export class TextChannel {
  private pending = "";
  /** The start of a secret longer than MAX_MATCH_HOLD was written (redacted): its rest is not. */
  private inSecret = false;

  constructor(
    private readonly action: GuardrailAction,
    private readonly counts: RuleCounts,
  ) {}

  /** The part of `pending + text` that can be written now (redacted), or the rule that blocks it. */
  feed(text: string): { text: string } | { blocked: GuardrailRule } {
    let all = this.pending + text;
    let lead = "";
    if (this.inSecret) {
      // The rest of a long secret whose start went out redacted: dropped (flag: written as it is).
      let k = 0;
      while (k < all.length && isTokenChar(all.charCodeAt(k))) k++;
      if (this.action === "flag") lead = all.slice(0, k);
      if (k === all.length) {
        this.pending = "";
        return { text: lead };
      }
      this.inSecret = false;
      all = all.slice(k);
    }
    let cut = safeCut(all);
    const findings = scanPii(all);
    const done: PiiFinding[] = [];
    for (const f of findings) {
      if (f.end <= cut) {
        done.push(f);
        continue;
      }
      if (f.start < cut) {
        // A match reaching past the cut is held back whole, up to MAX_MATCH_HOLD; past that (only a
        // secret is so long) its start goes out redacted now and the rest is dropped as it comes.
        if (all.length - f.start <= MAX_MATCH_HOLD) cut = f.start;
        else {
          done.push({ rule: f.rule, start: f.start, end: cut });
          this.inSecret = true;
        }
      }
      break;
    }
    this.pending = all.slice(cut);
    const r = this.settle(all.slice(0, cut), done);
    return "blocked" in r || lead === "" ? r : { text: lead + r.text };
  }

  /** Whatever was held back, checked as final. */
  flush(): { text: string } | { blocked: GuardrailRule } {
    let rest = this.pending;
    this.pending = "";
    if (this.inSecret) {
      this.inSecret = false;
      let k = 0;
      while (k < rest.length && isTokenChar(rest.charCodeAt(k))) k++;
      if (this.action !== "flag") rest = rest.slice(k);
    }
    return rest === "" ? { text: "" } : this.settle(rest, scanPii(rest));
  }

  get holding(): boolean {
    return this.pending !== "";
  }

  private settle(text: string, findings: PiiFinding[]): { text: string } | { blocked: GuardrailRule } {
    for (const f of findings) this.counts[f.rule] = (this.counts[f.rule] ?? 0) + 1;
    if (findings.length === 0) return { text };
    if (this.action === "block") return { blocked: findings[0]!.rule };
    return { text: this.action === "redact" ? redact(text, findings) : text };
  }
}

export type StreamStep = { kind: "write"; chunks: unknown[] } | { kind: "block"; rule: GuardrailRule };

type Obj = Record<string, unknown>;

/**
 * Top-level fields of a non-OpenAI object chunk that carry a stream's text (`{"text": "…"}`): their
 * pieces are joined across chunks. Any other string field is a value of its own (an id, a status),
 * checked alone.
 */
const TEXT_FIELDS: ReadonlySet<string> = new Set(["text", "content", "delta", "token", "output", "generated_text"]);
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Output PII checks of a stream, chunk by chunk, holding back only what a pattern could still span.
 * The text of a stream is, per chunk shape:
 * - a string chunk (a handler yielding text): the chunks in order;
 * - an OpenAI chunk (`choices[]`): each choice's `delta.content` (chat) or `text` (completions), by
 *   its `index`; what a choice held back is released into the chunk that carries its `finish_reason`;
 * - any other object: each of its top-level string fields, by name.
 * Other strings in a chunk (ids, roles, nested values) are checked on their own. What is still held
 * when the stream ends comes out of `end()` as one more chunk per channel. Pure.
 */
export class StreamGuard {
  readonly counts: RuleCounts = {};
  private readonly channels = new Map<string, TextChannel>();
  /** The last OpenAI chunk seen: the shape of a closing chunk for text still held at the end. */
  private lastChoiceChunk: Obj | undefined;

  constructor(private readonly action: GuardrailAction) {}

  push(chunk: unknown): StreamStep {
    if (typeof chunk === "string") {
      const r = this.channel("$").feed(chunk);
      if ("blocked" in r) return { kind: "block", rule: r.blocked };
      return { kind: "write", chunks: r.text === "" ? [] : [r.text] };
    }
    if (!isObj(chunk)) return this.stateless(chunk);
    const copy = deepCopy(chunk) as Obj;
    /** The channel fields, which checkOthers leaves alone. */
    const skip = new Map<Obj, Set<string>>();
    const skipField = (o: Obj, key: string) => {
      const keys = skip.get(o);
      if (keys) keys.add(key);
      else skip.set(o, new Set([key]));
    };
    if (Array.isArray(copy.choices)) {
      this.lastChoiceChunk = copy;
      for (let k = 0; k < copy.choices.length; k++) {
        const choice: unknown = copy.choices[k];
        if (!isObj(choice)) continue;
        const index = typeof choice.index === "number" ? choice.index : k;
        const finished = choice.finish_reason !== undefined && choice.finish_reason !== null;
        const delta = choice.delta;
        const d = isObj(delta) ? delta : undefined;
        for (const [holder, key, name] of [[d, "content", `d${index}`], [d, "reasoning_content", `r${index}`], [choice, "text", `t${index}`]] as const) {
          if (!holder || (typeof holder[key] !== "string" && !(finished && this.channels.get(name)?.holding))) continue;
          const channel = this.channel(name);
          const fed = channel.feed(typeof holder[key] === "string" ? (holder[key] as string) : "");
          if ("blocked" in fed) return { kind: "block", rule: fed.blocked };
          let text = fed.text;
          if (finished) {
            const rest = channel.flush();
            if ("blocked" in rest) return { kind: "block", rule: rest.blocked };
            text += rest.text;
          }
          holder[key] = text;
          skipField(holder, key);
        }
      }
    } else {
      for (const key of Object.keys(copy)) {
        const value = copy[key];
        if (typeof value !== "string" || !TEXT_FIELDS.has(key)) continue;
        const fed = this.channel(`.${key}`).feed(value);
        if ("blocked" in fed) return { kind: "block", rule: fed.blocked };
        copy[key] = fed.text;
        skipField(copy, key);
      }
    }
    const blocked = this.checkOthers(copy, skip);
    return blocked ? { kind: "block", rule: blocked } : { kind: "write", chunks: [copy] };
  }

  /** What is still held back, as closing chunks (checked as final). */
  end(): StreamStep {
    const chunks: unknown[] = [];
    for (const [name, channel] of this.channels) {
      if (!channel.holding) continue;
      const r = channel.flush();
      if ("blocked" in r) return { kind: "block", rule: r.blocked };
      if (name === "$") chunks.push(r.text);
      else if (name.startsWith(".")) chunks.push({ [name.slice(1)]: r.text });
      else {
        const index = Number(name.slice(1));
        const choice = name.startsWith("d") ? { index, delta: { content: r.text }, finish_reason: null } : { index, text: r.text, finish_reason: null };
        chunks.push({ ...(this.lastChoiceChunk ?? {}), choices: [choice] });
      }
    }
    return { kind: "write", chunks };
  }

  private channel(name: string): TextChannel {
    let c = this.channels.get(name);
    if (!c) {
      c = new TextChannel(this.action, this.counts);
      this.channels.set(name, c);
    }
    return c;
  }

  /** A chunk with no stream text of its own (a number, an array): each string in it checked alone. */
  private stateless(chunk: unknown): StreamStep {
    if (chunk === null || typeof chunk !== "object") return { kind: "write", chunks: [chunk] };
    const copy = deepCopy(chunk);
    const blocked = this.checkOthers(copy, new Map());
    return blocked ? { kind: "block", rule: blocked } : { kind: "write", chunks: [copy] };
  }

  /** Checks, and redacts in place, the strings of `root` outside the channel fields (`skip`: object → its channel keys). */
  private checkOthers(root: unknown, skip: Map<Obj, Set<string>>): GuardrailRule | undefined {
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const v = stack.pop();
      if (v === null || typeof v !== "object") continue;
      const o = v as Obj;
      const skipKeys = skip.get(o);
      for (const k of Object.keys(o)) {
        const item = o[k];
        if (typeof item === "string") {
          if (item.length < 5 || skipKeys?.has(k)) continue; // no pattern is shorter
          const r = checkText(item, { pii: this.action }, this.counts);
          if (r.blockedBy) return r.blockedBy;
          if (r.findings.length > 0 && this.action === "redact") o[k] = redact(item, r.findings);
        } else if (item !== null && typeof item === "object") stack.push(item);
      }
    }
    return undefined;
  }
}

/** A copy of a JSON value, with an explicit stack (any depth). */
function deepCopy(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const container = (v: object): Obj => (Array.isArray(v) ? [] : {}) as Obj;
  const root = container(value);
  const stack: [Obj, Obj][] = [[value as Obj, root]];
  while (stack.length > 0) {
    const [src, dst] = stack.pop()!;
    for (const k of Object.keys(src)) {
      const item = src[k];
      if (item !== null && typeof item === "object") {
        const c = container(item);
        dst[k] = c;
        stack.push([item as Obj, c]);
      } else dst[k] = item;
    }
  }
  return root;
}
