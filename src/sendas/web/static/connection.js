/* Test Connection extras: saving the encryption found, and adding an IMAP account from inside
   the alias form without leaving it. Loaded on every page; each part looks for its elements. */
(function () {
  "use strict";

  /* "Save SSL/TLS (implicit) as the encryption": set the form's mode, then save the form as
     tested (its Save button's request, so errors show as for any save). */
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("[data-save-tls]");
    if (!button) return;
    var form = button.closest("form");
    var select = form && form.querySelector("select[name=tls], input[name=tls]");
    if (!select) return;
    select.value = button.getAttribute("data-save-tls");
    var details = select.closest("details");
    if (details) details.open = true;
    button.disabled = true;
    button.textContent = "Saving…";
    form.requestSubmit();
  });

  /* The "Add an IMAP account" dialog beside the alias form. */
  function initImapDialog() {
    var dialog = document.getElementById("imap-dialog");
    var open = document.getElementById("add-imap");
    if (!dialog || !open || typeof dialog.showModal !== "function") return;
    open.addEventListener("click", function () {
      dialog.showModal();
      var first = dialog.querySelector("input:not([type=hidden])");
      if (first) first.focus();
    });
    dialog.querySelectorAll("[data-close-dialog]").forEach(function (b) {
      b.addEventListener("click", function () { dialog.close(); open.focus(); });
    });
    /* The server answers a created account with a fresh IMAP select (out of band) and
       the event below; the dialog then closes and focus returns to the select. */
    document.body.addEventListener("imapAccountAdded", function () {
      dialog.close();
      var form = dialog.querySelector("form");
      if (form) form.reset();
      var select = document.getElementById("f-imap_account_id");
      if (select) select.focus();
    });
  }

  document.addEventListener("DOMContentLoaded", initImapDialog);
})();
