// Log the click of a recommended product through the public API, then open its page.
// The API answers 201 (counted or late) or 200 (already clicked); either way we navigate,
// and a failed request never keeps the shopper from the product.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a.product[data-impression-id]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) {
      return;
    }
    event.preventDefault();
    var go = function () { window.location.assign(link.href); };
    // The id is opaque: sent back exactly as the page got it.
    var body = JSON.stringify({ impression_id: link.dataset.impressionId });
    fetch("/api/v1/clicks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body,
      keepalive: true,
      credentials: "omit"
    }).then(function (response) {
      link.dataset.clickStatus = String(response.status);
    }).catch(function () {}).finally(go);
  });
})();

// "Add to cart" and "Buy": a business event for the tile's impression, recorded by the shop's own server
// (same origin, CSRF token; it knows the visitor and the price). One event_id per press, so a retried
// request is counted once; the button says what the server answered.
(function () {
  "use strict";
  var counter = 0;
  function eventId() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    counter += 1;
    return "shop-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + "-" + counter;
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.event[data-event-type]");
    if (!button) { return; }
    var actions = button.closest(".actions");
    var grid = button.closest(".grid[data-event-url]");
    if (!actions || !grid) { return; }
    button.disabled = true;
    fetch(grid.dataset.eventUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": grid.dataset.csrfToken },
      credentials: "same-origin",
      body: JSON.stringify({
        type: button.dataset.eventType,
        item_id: actions.dataset.itemId,
        impression_id: actions.dataset.impressionId,
        event_id: eventId()
      })
    }).then(function (response) {
      button.dataset.eventStatus = String(response.status);
      if (response.ok) {
        button.textContent = button.dataset.eventType === "purchase" ? "Bought ✓" : "In cart ✓";
      }
    }).catch(function () {
      button.dataset.eventStatus = "error";
    }).finally(function () { button.disabled = false; });
  });
})();
