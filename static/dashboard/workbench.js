/* The kind picker: show the chosen kind's hyper-parameters (the server renders every kind's fieldset). */
(function () {
  "use strict";
  const select = document.getElementById("id_kind");
  if (!select) return;
  function show() {
    for (const fs of document.querySelectorAll("fieldset.params")) {
      const on = fs.dataset.kind === select.value;
      fs.hidden = !on;
      fs.disabled = !on; // only the chosen kind's values are submitted
    }
  }
  select.addEventListener("change", show);
  show();
})();
