/**
 * Postgres text holds no NUL character, and a lone UTF-16 surrogate cannot travel as UTF-8 (the
 * driver would silently send U+FFFD). A tenant's strings may hold either, so text columns get a
 * copy with U+FFFD in those places, and the exact string goes beside it as a JSON string literal
 * (JSON escapes both as ASCII `\u0000`, `\ud800`), which is the documented lossless encoding:
 * `exact ?? text` read back through `fromPgText` is the original.
 */
export function toPgText(s: string): { text: string; exact: string | null } {
  const text = s.toWellFormed().replaceAll("\u0000", "\uFFFD");
  return text === s ? { text: s, exact: null } : { text, exact: JSON.stringify(s) };
}

/** The original string from a column and its exact companion (see `toPgText`). */
export function fromPgText(text: string | null, exact: string | null): string | null {
  if (exact !== null) {
    try {
      const v: unknown = JSON.parse(exact);
      if (typeof v === "string") return v;
    } catch {
      // a damaged companion: the column's copy is the best there is
    }
  }
  return text;
}
