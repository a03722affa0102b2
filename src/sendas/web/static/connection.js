/* Test Connection extras: saving the encryption found, and adding an IMAP account from inside
   the alias form without leaving it. Loaded on every page; each part looks for its elements. */
(function () {
  "use strict";

  /* "Save SSL/TLS (implicit) as the encryption": set the form's mode, then save the form as
     tested (through its own Save, so errors show as for any save). */
  function saveTls(button) {
    var form = button.closest("form");
    var select = form && form.querySelector("select[name=tls]");
    if (!select) return;
    select.value = button.getAttribute("data-save-tls");
    var details = select.closest("details");
    if (details) details.open = true;
    button.disabled = true;
    button.textContent = "Saving…";
    form.requestSubmit();
  }

  function imapDialog() { return document.getElementById("imap-dialog"); }

  document.addEventListener("click", function (ev) {
    var target = ev.target.closest ? ev.target : null;
    if (!target) return;
    var save = target.closest("[data-save-tls]");
    if (save) { saveTls(save); return; }
    if (target.closest("[data-close-dialog]")) {
      var dialog = target.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  /* The dialog's content arrives by htmx: open it then, and empty it once closed, so its
     fields never stand beside the alias form's while unused. */
  document.addEventListener("htmx:afterSwap", function (ev) {
    var dialog = imapDialog();
    if (!dialog || ev.detail.target !== dialog || dialog.open) return;
    dialog.showModal();
    var first = dialog.querySelector("input:not([type=hidden])");
    if (first) first.focus();
  });

  document.addEventListener("close", function (ev) {
    var dialog = imapDialog();
    if (ev.target !== dialog) return;
    dialog.innerHTML = "";
    var added = dialog.getAttribute("data-added") === "yes";
    dialog.removeAttribute("data-added");
    var next = document.getElementById(added ? "f-imap_account_id" : "add-imap");
    if (next) next.focus();
  }, true);

  /* A created account: the server already swapped the alias form's IMAP choices (out of
     band) with the new one selected; close the dialog and land on that select. */
  document.addEventListener("imapAccountAdded", function (ev) {
    var select = document.getElementById("f-imap_account_id");
    if (select && ev.detail && ev.detail.id) select.value = String(ev.detail.id);
    var dialog = imapDialog();
    if (dialog && dialog.open) {
      dialog.setAttribute("data-added", "yes");
      dialog.close();
    }
  });
})();
