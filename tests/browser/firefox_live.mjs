// Loads a board page in Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core,
// and checks that a score posted over HTTP reaches the page live (no reload).
//
// Usage: node tests/browser/firefox_live.mjs BASE_URL BOARD_ID POSTER_TOKEN USER_ID
// The page is opened anonymously (the test server runs with --anonymous-read). Exit 0 when the
// posted player's row appears in the live top 10 with the status indicator saying "live".
import puppeteer from "puppeteer-core";

const [baseUrl, board, posterToken, userId] = process.argv.slice(2);
const FIREFOX = process.env.FIREFOX_BIN || "/usr/bin/firefox-esr";
const STEP_TIMEOUT_MS = 20_000;

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: FIREFOX,
  headless: true,
  protocol: "webDriverBiDi",
  // Nothing from the outside world: no updates, telemetry or safe-browsing look-ups.
  extraPrefsFirefox: {
    "app.update.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
  },
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(`${baseUrl}/boards/${encodeURIComponent(board)}`, { timeout: STEP_TIMEOUT_MS });
  await page.waitForFunction(
    () => document.querySelector("#indicator")?.dataset.state === "live",
    { timeout: STEP_TIMEOUT_MS },
  );
  const version = await browser.version();
  const response = await fetch(`${baseUrl}/api/boards/${encodeURIComponent(board)}/scores`, {
    method: "POST",
    headers: { Authorization: `Bearer ${posterToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, score: 424242 }),
  });
  if (response.status !== 200) throw new Error(`post answered ${response.status}`);
  const posted = Date.now();
  await page.waitForFunction(
    (user) => document.querySelector(`#top10 li[data-user="${user}"] .score`)?.dataset.score === "424242",
    { timeout: STEP_TIMEOUT_MS },
    userId,
  );
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  console.log(JSON.stringify({ ok: true, browser: version, live_update_ms: Date.now() - posted }));
} finally {
  await browser.close();
}
