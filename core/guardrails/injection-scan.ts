/**
 * A prompt-injection heuristic: phrases that ask a model to drop its instructions or reveal them,
 * known jailbreak names, and chat-template control markers smuggled into user text. A heuristic,
 * not a classifier: it catches the common forms cheaply; an operator who needs more points the
 * endpoint's `external` guard at a model-based checker. Pure.
 *
 * Linear time: every alternative below is a fixed sequence of literals with bounded optional words
 * (no nested or unbounded quantifiers), so each start position costs a bounded number of steps,
 * and the text is lower-cased and its whitespace collapsed first (both linear).
 */
const PATTERNS: readonly RegExp[] = [
  /\b(?:ignore|disregard|forget|override|bypass) (?:all |any |the |your |my )?(?:of )?(?:the |your )?(?:previous|prior|above|earlier|preceding|system|original|safety)? ?(?:instructions|prompts?|rules|guidelines|directives|context)\b/,
  /\b(?:reveal|print|show|repeat|output|leak|tell me) (?:me )?(?:your|the) (?:system |initial |hidden |original )?(?:prompt|instructions)\b/,
  /\byou are now (?:dan|in developer mode|unrestricted|jailbroken)\b/,
  /\b(?:do anything now|developer mode (?:enabled|on)|jailbreak mode)\b/,
  /\bnew (?:system )?instructions ?:/,
  /<\|im_start\|>|<\|system\|>|<\|start_header_id\|>|\[\/?inst\]|<<\/?sys>>|### ?system ?:/,
];

/** The number of distinct injection patterns found in `text` (0: none). */
export function scanInjection(text: string): number {
  const normal = text.toLowerCase().replace(/\s+/g, " ");
  let hits = 0;
  for (const p of PATTERNS) if (p.test(normal)) hits++;
  return hits;
}
