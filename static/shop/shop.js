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
