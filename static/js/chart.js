// Small SVG line charts with no library: the board page's "top players this session" and the
// admin page's sparklines. The maths (series upkeep, scaling to points) is pure and tested with
// `node --test`; `drawLines` and `drawSparkline` are the only parts that touch the DOM.

/** Points kept per series: a session of frames must not grow memory without bound. */
export const MAX_POINTS = 300;

/**
 * Add one observation of the standings to the chart's series (pure: returns a new object).
 * Keeps a series for every player in the current top `limit`, drops those who left it.
 * @param {Record<string, {name: string, points: Array<[number, number]>}>} series
 * @param {Array<{user_id: string, name: string, score: number}>} top  the current top entries
 * @param {number} t  time of the observation (ms)
 * @param {number} limit  how many of the top players to follow
 */
export function addObservation(series, top, t, limit = 5) {
  const next = {};
  for (const entry of top.slice(0, limit)) {
    const old = series[entry.user_id];
    const points = old ? old.points.slice(-(MAX_POINTS - 1)) : [];
    const last = points[points.length - 1];
    // Only changes are kept: the drawing holds each score as a step until the next one.
    if (!last || last[1] !== entry.score) points.push([t, entry.score]);
    next[entry.user_id] = { name: entry.name, points: points.slice(-MAX_POINTS) };
  }
  return next;
}

/**
 * Scale a series of [t, value] pairs into SVG points for a width × height box.
 * Values are drawn as steps (a score holds until it changes). `invert` puts low values on top
 * (for boards where lower is better). Returns the `points` attribute string.
 */
export function toPolyline(points, { t0, t1, min, max, width, height, invert = false }) {
  if (points.length === 0) return "";
  const spanT = Math.max(1, t1 - t0);
  const spanV = max - min || 1;
  const pad = 6;
  const x = (t) => ((t - t0) / spanT) * width;
  const y = (v) => {
    const share = (v - min) / spanV;
    const fromTop = invert ? share : 1 - share;
    return pad + fromTop * (height - 2 * pad);
  };
  const out = [];
  let previous = null;
  for (const [t, v] of points) {
    if (previous !== null) out.push(`${x(t).toFixed(1)},${y(previous).toFixed(1)}`);
    out.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    previous = v;
  }
  out.push(`${width.toFixed(1)},${y(previous).toFixed(1)}`);
  return out.join(" ");
}

/** The time and value ranges over every series (pure). */
export function extent(allPoints, now) {
  let t0 = Infinity, min = Infinity, max = -Infinity;
  for (const points of allPoints) {
    for (const [t, v] of points) {
      if (t < t0) t0 = t;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (t0 === Infinity) return null;
  return { t0, t1: Math.max(now, t0 + 1), min, max };
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Draw the series as step lines into `svg` and list them in `legend` (an <ul>). */
export function drawLines(svg, legend, series, { now, invert = false }) {
  const width = 320, height = 160;
  const ids = Object.keys(series);
  const range = extent(ids.map((id) => series[id].points), now);
  svg.replaceChildren();
  legend.replaceChildren();
  if (!range) return;
  ids.forEach((id, i) => {
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("class", `series s${i}`);
    line.setAttribute("points", toPolyline(series[id].points, { ...range, width, height, invert }));
    svg.append(line);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch s${i}`;
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, series[id].name);
    legend.append(item);
  });
}

/** Draw one sparkline of recent values (oldest first) into `svg`. */
export function drawSparkline(svg, values) {
  const width = 200, height = 40;
  svg.replaceChildren();
  if (values.length < 2) return;
  const points = values.map((v, i) => [i, v]);
  const max = Math.max(...values, 1);
  const line = document.createElementNS(SVG_NS, "polyline");
  const scaled = toPolyline(points, { t0: 0, t1: values.length - 1, min: 0, max, width, height });
  line.setAttribute("points", scaled);
  svg.append(line);
}
