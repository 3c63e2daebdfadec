/**
 * Finds OpenAI `stop` strings in text that arrives in decoded pieces, and says which text is safe
 * to send on: everything except a tail that might still grow into a stop string. The output ends
 * right before the earliest stop string, which it never contains.
 *
 * Matching is done here, on text decoded with its preceding tokens as context, because
 * node-llama-cpp's own stop-trigger detector decodes each token alone: with SentencePiece
 * vocabularies that drops a word's leading space ("▁ex" reads "ex"), so a stop string with a
 * space in it never matched and the text before a match lost its spaces (measured: 39 of 65 stop
 * strings cut from a real completion of the tiny llama).
 */
export class StopStringMatcher {
  private text = "";
  private sent = 0;
  private found = false;

  constructor(private readonly stops: readonly string[]) {}

  /** True once a stop string appeared; later pieces are ignored. */
  get stopped(): boolean {
    return this.found;
  }

  /** The text so far, up to (not including) the stop string once one appeared. */
  get output(): string {
    return this.text;
  }

  /** Adds a decoded piece; returns the text that may now be sent (possibly empty). */
  push(piece: string): string {
    if (this.found) return "";
    this.text += piece;
    // A stop string cannot start inside text already sent: while it could, its start was held back.
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, this.sent);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.found = true;
      this.text = this.text.slice(0, cut);
    }
    const end = this.found ? this.text.length : this.text.length - this.heldBackLength();
    const out = this.text.slice(this.sent, end);
    this.sent = end;
    return out;
  }

  /** At the end of the generation: the held-back tail, which turned out not to start a stop string. */
  flush(): string {
    const out = this.text.slice(this.sent);
    this.sent = this.text.length;
    return out;
  }

  /** Length of the longest unsent tail that is a proper prefix of some stop string. */
  private heldBackLength(): number {
    const unsent = this.text.length - this.sent;
    let longest = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, unsent); k > longest; k--) {
        if (this.text.endsWith(stop.slice(0, k))) {
          longest = k;
          break;
        }
      }
    }
    return longest;
  }
}
