import { z } from "zod";
import { randomAlnum } from "../../../core/ids/random-id.ts";
import type { ToolPlan } from "./tool-calls.ts";

/*
 * Reading tool calls back from what the grammar (tool-calls.ts) let the model write: one or more
 * JSON objects `{"name": ..., "arguments": ...}` separated by whitespace. A small scanner follows
 * the objects' nesting (strings and escapes included), so a call is known to be complete at its
 * closing brace, whatever its arguments hold, and its arguments can be streamed as they are decoded.
 */

/** A call in OpenAI's response shape. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** A piece of a streamed call: its position in the turn, its id and name once known, then fragments of its arguments' JSON text. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  arguments?: string;
}

const callObject = z.object({ name: z.string(), arguments: z.unknown() });

const newCallId = () => `call_${randomAlnum(24)}`;

/** Follows JSON text character by character: nesting depth outside strings. */
class JsonNesting {
  depth = 0;
  private inString = false;
  private escaped = false;

  /** The depth after `ch`. */
  step(ch: string): number {
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (ch === "\\") this.escaped = true;
      else if (ch === '"') this.inString = false;
    } else if (ch === '"') this.inString = true;
    else if (ch === "{" || ch === "[") this.depth++;
    else if (ch === "}" || ch === "]") this.depth--;
    return this.depth;
  }
}

/**
 * The calls of a finished output: undefined when it is a text answer (under `auto`), holds anything
 * but call objects and whitespace, or was cut before the last call's JSON ended (finish_reason
 * "length").
 */
export function parseToolCalls(text: string): ToolCall[] | undefined {
  const nesting = new JsonNesting();
  const calls: ToolCall[] = [];
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (nesting.depth === 0 && start < 0) {
      if (ch === "{") start = i;
      else if (!/\s/.test(ch)) return undefined;
    }
    if (nesting.step(ch) === 0 && start >= 0) {
      let value: unknown;
      try {
        value = JSON.parse(text.slice(start, i + 1));
      } catch {
        return undefined;
      }
      const call = callObject.safeParse(value);
      if (!call.success) return undefined;
      calls.push({ id: newCallId(), type: "function", function: { name: call.data.name, arguments: JSON.stringify(call.data.arguments) } });
      start = -1;
    }
  }
  return start < 0 && calls.length > 0 ? calls : undefined;
}

/** The start of a call as the grammar writes it, up to where the arguments' value begins. */
const CALL_HEAD = /^\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*/;
const TRAILING_SPACE = /\s*$/;

/**
 * Splits a streamed output into text to send as `delta.content` at once and tool calls streamed as
 * OpenAI does: each call's index, id and name as soon as the grammar has written the name, then its
 * arguments' JSON text as it is decoded. Under `auto` the first character decides (the grammar
 * allows `{` only as a call's start); under `required` all of it is calls. The fragments of a call
 * join into its arguments' JSON text as the model wrote it (whitespace inside included), which
 * parses to the same value.
 */
export class ToolCallSplitter {
  private kind: "text" | "call" | undefined;
  private text = "";
  private readonly nesting = new JsonNesting();
  /** Where the current call's `{` is in `text`; -1 between calls. */
  private callStart = -1;
  /** Where the current call's arguments start, once its head is complete; -1 before. */
  private argsStart = -1;
  private sentTo = 0;
  private calls = 0;

  constructor(mode: ToolPlan["mode"]) {
    if (mode === "required") this.kind = "call";
  }

  /** `content` to send now, and the calls' deltas that `piece` completed. */
  push(piece: string): { content: string; deltas: ToolCallDelta[] } {
    if (this.kind === undefined && piece !== "") this.kind = piece.startsWith("{") ? "call" : "text";
    if (this.kind !== "call") return { content: piece, deltas: [] };
    const deltas: ToolCallDelta[] = [];
    const from = this.text.length;
    this.text += piece;
    for (let i = from; i < this.text.length; i++) {
      const ch = this.text[i]!;
      const before = this.nesting.depth;
      const after = this.nesting.step(ch);
      if (before === 0 && ch === "{") {
        this.callStart = i;
        this.argsStart = -1;
      } else if (after === 0 && before > 0 && this.callStart >= 0) {
        // The call object closed at i: what is left of its arguments ends before the brace.
        this.head(i + 1, deltas);
        if (this.argsStart >= 0) this.sendArgs(i - (TRAILING_SPACE.exec(this.text.slice(this.sentTo, i))?.[0].length ?? 0), deltas);
        this.callStart = -1;
      }
    }
    if (this.callStart >= 0) {
      this.head(this.text.length, deltas);
      // Inside the arguments everything decoded may go; at the call's own level, trailing space may
      // be what precedes its closing brace, and waits.
      const end = this.nesting.depth > 1 ? this.text.length : this.text.length - (TRAILING_SPACE.exec(this.text.slice(this.sentTo))?.[0].length ?? 0);
      if (this.argsStart >= 0) this.sendArgs(end, deltas);
    }
    return { content: "", deltas };
  }

  /** Whether the output is calls, whose text went out as deltas, not content. */
  get holdsCall(): boolean {
    return this.kind === "call";
  }

  /** Whether a call's id and name went out already. */
  get callStarted(): boolean {
    return this.calls > 0;
  }

  /**
   * At the end: whether the output was complete calls (all of their text went out as `push` read
   * it), or undefined when it is not (cut by max_tokens or a stop string).
   */
  finish(output: string): ToolCallDelta[] | undefined {
    if (!this.callStarted || parseToolCalls(output) === undefined) return undefined;
    return [];
  }

  /** Emits the current call's index, id and name once its head is in `text` before `until`. */
  private head(until: number, deltas: ToolCallDelta[]): void {
    if (this.argsStart >= 0) return;
    const head = CALL_HEAD.exec(this.text.slice(this.callStart, until));
    if (!head) return;
    deltas.push({ index: this.calls++, id: newCallId(), name: JSON.parse(head[1]!) as string, arguments: "" });
    this.argsStart = this.sentTo = this.callStart + head[0].length;
  }

  private sendArgs(end: number, deltas: ToolCallDelta[]): void {
    if (end <= this.sentTo) return;
    deltas.push({ index: this.calls - 1, arguments: this.text.slice(this.sentTo, end) });
    this.sentTo = end;
  }
}
