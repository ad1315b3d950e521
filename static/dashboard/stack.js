/* The banner naming background parts (trainer, light worker, beat) that have not checked in.
 *
 * Rendered by the server with the page, then kept current from /healthz every few seconds: the live stats
 * push itself runs on the light worker, so it cannot be what tells the page the light worker is gone.
 */
(function () {
  "use strict";
  const POLL_MS = 5000;
  const CONSEQUENCES = {
    "trainer": "no arm learns",
    "light worker": "nothing is dispatched for training and the live numbers stop",
    "beat": "no training, stats or guardrail tick is scheduled",
  };
  const banner = document.getElementById("stack-banner");
  if (!banner) return;
  const names = banner.querySelector("[data-testid=stack-missing]");
  const why = banner.querySelector("[data-testid=stack-why]");

  function show(missing) {
    if (!missing.length) {
      banner.hidden = true;
      return;
    }
    names.textContent = missing.join(", ");
    why.textContent = ", so " + missing.map((p) => CONSEQUENCES[p] || "it does not run").join("; ");
    banner.hidden = false;
  }

  async function poll() {
    try {
      const response = await fetch("/healthz", { cache: "no-store", credentials: "same-origin" });
      const body = await response.json();
      if (body.parts) show(Object.keys(body.parts).filter((p) => body.parts[p] !== "ok"));
    } catch (e) {
      /* the server is away: the page's own connection status says so */
    }
  }
  window.setInterval(poll, POLL_MS);
})();
