/**
 * Scoreboard score display rules for the browser (and Node 20): a plain ES module, no
 * dependencies.
 *
 * Scores stay integers on the wire; a board's `score_format` decides how one is shown
 * (docs/api.md#score-display-score_format). scoreboard/formatting.py implements the same rules on the server, and
 * both are checked against the one table of cases in tests/score_format_cases.json.
 *
 * All arithmetic is on BigInt, never on floating-point, so every score within
 * ±(2^53-1) formats exactly.
 *
 * Formats:
 *   - `integer`: digits grouped in threes with a comma (1240 -> "1,240").
 *   - `decimal:N`, N 1-6: the integer divided by 10^N, integer part grouped, exactly N
 *     decimals (123456 with decimal:2 -> "1,234.56"; -5 -> "-0.05").
 *   - `duration_ms`: milliseconds as m:ss.mmm, h:mm:ss.mmm from an hour on (hours keep
 *     growing); a negative value is "-" and the absolute value's format.
 */

const SCORE_FORMAT_RE = /^(integer|duration_ms|decimal:[1-6])$/;

/**
 * Whether `value` is an accepted `score_format`: exactly "integer", "duration_ms" or
 * "decimal:1" to "decimal:6" (no other case, no spaces, no leading zeros, strings only).
 *
 * @param {unknown} value
 * @returns {boolean}
 */
export function isScoreFormat(value) {
  return typeof value === "string" && SCORE_FORMAT_RE.test(value);
}

/**
 * A score as a board with `scoreFormat` shows it.
 *
 * @param {number | bigint} score a safe integer (Number.isSafeInteger) or a BigInt
 * @param {string} scoreFormat one of the formats isScoreFormat accepts
 * @returns {string} the display text, e.g. "1,234.56" or "1:02.345"
 * @throws {TypeError} when `score` is not a safe integer or a BigInt
 * @throws {RangeError} when `scoreFormat` is not an accepted format
 */
export function formatScore(score, scoreFormat) {
  let value;
  if (typeof score === "bigint") {
    value = score;
  } else if (typeof score === "number" && Number.isSafeInteger(score)) {
    value = BigInt(score);
  } else {
    throw new TypeError(`score must be a safe integer or a BigInt, got ${String(score)}`);
  }
  if (!isScoreFormat(scoreFormat)) {
    throw new RangeError(`unknown score_format, got ${JSON.stringify(scoreFormat)}`);
  }
  const sign = value < 0n ? "-" : "";
  const magnitude = value < 0n ? -value : value;
  if (scoreFormat === "integer") {
    return sign + group(magnitude);
  }
  if (scoreFormat === "duration_ms") {
    return sign + duration(magnitude);
  }
  const digits = Number(scoreFormat.slice("decimal:".length));
  const scale = 10n ** BigInt(digits);
  const whole = magnitude / scale;
  const fraction = magnitude % scale;
  return `${sign}${group(whole)}.${fraction.toString().padStart(digits, "0")}`;
}

/** A non-negative BigInt with its digits grouped in threes by commas. */
function group(magnitude) {
  return magnitude.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A non-negative BigInt of milliseconds as m:ss.mmm, or h:mm:ss.mmm from an hour on. */
function duration(ms) {
  const millis = ms % 1000n;
  const seconds = ms / 1000n;
  const hours = seconds / 3600n;
  const minutes = (seconds % 3600n) / 60n;
  const secs = seconds % 60n;
  const tail = `${pad(secs, 2)}.${pad(millis, 3)}`;
  if (hours > 0n) {
    return `${hours}:${pad(minutes, 2)}:${tail}`;
  }
  return `${minutes}:${tail}`;
}

/** A non-negative BigInt zero-padded to `width` digits. */
function pad(value, width) {
  return value.toString().padStart(width, "0");
}
