// Reads a score typed by a person in the board's own notation ("1:02.345" on a time board,
// "12.34" on a two-decimal board) into the integer the API stores. Pure; tested with node --test.

const MAX_SAFE = 2 ** 53 - 1;

function fail(message) {
  return { ok: false, message };
}

function checked(value) {
  if (!Number.isSafeInteger(value) || Math.abs(value) > MAX_SAFE) {
    return fail("That number is too large.");
  }
  return { ok: true, value };
}

/**
 * @param {string} text  what was typed
 * @param {string} scoreFormat  "integer" | "decimal:N" | "duration_ms"
 * @returns {{ok: true, value: number} | {ok: false, message: string}}
 */
export function parseScoreInput(text, scoreFormat) {
  const typed = String(text).trim().replace(/[,_\s]/g, "");
  if (typed === "") return fail("Enter a score.");
  if (scoreFormat === "duration_ms") return parseDuration(typed);
  const decimals = scoreFormat.startsWith("decimal:") ? Number(scoreFormat.slice(8)) : 0;
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(typed);
  if (!match) return fail(`A score is a number, got "${text.trim()}".`);
  const [, sign, whole, fraction = ""] = match;
  if (fraction.length > decimals) {
    return fail(decimals ? `At most ${decimals} decimals.` : "A score is a whole number.");
  }
  const digits = whole + fraction.padEnd(decimals, "0");
  return checked(Number(sign + digits));
}

function parseDuration(typed) {
  // Plain milliseconds, or [h:]m:ss[.mmm] / s.mmm as the board shows times; "-" before either.
  if (typed.startsWith("-") && !typed.startsWith("--")) {
    const positive = parseDuration(typed.slice(1));
    return positive.ok ? checked(-positive.value) : positive;
  }
  if (/^\d+$/.test(typed)) return checked(Number(typed));
  const match = /^(?:(?:(\d+):)?(\d{1,2}):)?(\d{1,2})(?:\.(\d{1,3}))?$/.exec(typed);
  if (!match) return fail(`A time looks like 1:02.345, got "${typed}".`);
  const [, h = "0", m = "0", s, ms = ""] = match;
  if (Number(s) > 59 || (match[1] !== undefined && Number(m) > 59)) {
    return fail(`A time looks like 1:02.345, got "${typed}".`);
  }
  const millis = Number(ms.padEnd(3, "0"));
  return checked(((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1000 + millis);
}
