/* sendas pages: small enhancements; every page also works without them. */
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  /* Provider presets and the helpers of the Edit Alias screen. */
  function serverWarning() {
    var input = $("#f-smtp_server"), box = $("#server-warning");
    if (!input || !box) return;
    var host = input.value.trim().toLowerCase().replace(/^\[/, "");
    if (/^(imap|pop|pop3)\./.test(host)) {
      box.textContent = "This looks like an incoming-mail server (" + host.split(":")[0] +
        "). Sending needs the outgoing (SMTP) server, which usually starts with smtp. — " +
        "for Gmail that is smtp.gmail.com:465.";
      box.hidden = false;
    } else if (box.dataset.js) {
      box.hidden = true;
    }
    box.dataset.js = "1";
  }

  /* What a preset that prefers signing in tells the user: the button above, or who can
     switch it on. */
  function signInTip(provider) {
    var label = provider === "google" ? "Google" : "Microsoft";
    var box = $("#signin-" + provider);
    if (box && box.dataset.available === "yes") {
      return "Use the “Sign in with " + label + "” button at the top of this form.";
    }
    return "Sign in with " + label + " is not switched on here yet: an administrator registers " +
      "the " + label + " app first (Admin, Sign-in apps). Until then use an app password if your " +
      "provider allows one.";
  }

  function initAliasForm() {
    var form = $("#alias-form");
    if (!form) return;
    var data = $("#presets-data");
    var presets = data ? JSON.parse(data.textContent) : [];
    var select = $("#f-preset"), note = $("#preset-note");
    select.addEventListener("change", function () {
      var p = presets.find(function (x) { return x.key === select.value; });
      if (!p) { note.hidden = true; return; }
      $("#f-smtp_server").value = p.smtp_server;
      $("#f-tls").value = p.tls === "none" ? "auto" : p.tls;
      if (disable) disable.checked = false;
      $("#f-delay_ms").value = String(p.delay_ms);
      toggleTls();
      serverWarning();
      var text = p.label + ": " + p.note;
      if (p.delay_ms) text += " Suggested delay: " + fmt(p.delay_ms) + " ms.";
      if (p.oauth) text += " " + signInTip(p.oauth);
      note.textContent = text;
      note.hidden = false;
    });
    $("#f-smtp_server").addEventListener("input", serverWarning);

    var disable = $("#f-disable_tls");
    function toggleTls() { if (disable) $("#tls-warning").hidden = !disable.checked; }
    if (disable) disable.addEventListener("change", toggleTls);

    var perMinute = $("#f-per-minute"), math = $("#rate-math"), use = $("#use-rate");
    var computed = null;
    perMinute.addEventListener("input", function () {
      var n = parseInt(perMinute.value, 10);
      if (!n || n < 1) {
        computed = null; use.disabled = true;
        math.textContent = "Type a limit to compute the delay: 60,000 ms in a minute ÷ the limit.";
        return;
      }
      computed = Math.ceil(60000 / n);
      use.disabled = false;
      math.textContent = "60,000 ms ÷ " + fmt(n) + " = " + fmt(computed) + " ms between emails" +
        (computed >= 1000 ? " (" + (computed / 1000).toLocaleString("en-US") + " s)." : ".");
    });
    use.addEventListener("click", function () {
      if (computed !== null) { $("#f-delay_ms").value = String(computed); $("#f-delay_ms").focus(); }
    });
  }

  /* After an htmx answer, mark the fields that have an error and focus the first one. */
  function markErrors() {
    var first = null;
    document.querySelectorAll(".field-error").forEach(function (slot) {
      var name = slot.id.replace(/^err-/, "");
      var input = document.getElementById("f-" + name);
      var wrap = document.getElementById("field-" + name);
      var bad = slot.textContent.trim() !== "";
      if (input) {
        if (bad) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      }
      if (wrap) wrap.classList.toggle("invalid", bad);
      if (bad && !first && input) first = input;
    });
    return first;
  }

  /* Focus a field with an error and bring it to the middle of the screen: never under the
     sticky Test/Save bar, wherever the field is (the message says "the marked fields"). */
  function showField(input) {
    input.focus({preventScroll: true});
    var wrap = input.closest(".field") || input;
    wrap.scrollIntoView({block: "center"});
  }

  /* Times: the server writes <time datetime="...Z">UTC text</time>; show them in the
     viewer's own time zone (the UTC text stays as the tooltip). */
  var timeFormat = null;
  function localTimes(root) {
    if (!window.Intl || !Intl.DateTimeFormat) return;
    if (!timeFormat) {
      timeFormat = new Intl.DateTimeFormat("en-CA", {
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
        minute: "2-digit", hourCycle: "h23", timeZoneName: "short"
      });
    }
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      var p = {};
      timeFormat.formatToParts(moment).forEach(function (part) { p[part.type] = part.value; });
      el.title = el.textContent;
      el.textContent = p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute +
        " " + p.timeZoneName;
      el.setAttribute("data-local", "");
    });
  }

  document.addEventListener("htmx:afterSettle", function (ev) {
    localTimes(document);
    var first = markErrors();
    var xhr = ev.detail && ev.detail.xhr;
    var target = ev.detail && ev.detail.target;
    var testErrors = target && target.id === "test-result" && $(".test-result.not-tested", target);
    if (first && xhr && (xhr.status === 422 || testErrors)) { showField(first); return; }
    if (target && target.id === "test-result") target.scrollIntoView({block: "center", behavior: "smooth"});
  });

  /* A page rendered with field errors (a form posted without scripts): same treatment. */
  function focusFirstError() {
    var first = document.querySelector("form [aria-invalid=\"true\"]");
    if (first && first.offsetParent !== null) showField(first);
  }

  /* The sticky Test/Save bar: the page keeps that much room at the bottom when it scrolls a
     focused field into view (CSS scroll-padding-bottom reads --sticky-bar). */
  function trackStickyBar() {
    var bar = $(".actions.sticky");
    if (!bar) return;
    function measure() {
      var room = Math.ceil(bar.getBoundingClientRect().height) + 8;
      document.documentElement.style.setProperty("--sticky-bar", room + "px");
    }
    measure();
    window.addEventListener("resize", measure);
    if (window.ResizeObserver) new ResizeObserver(measure).observe(bar);
    // The browser does not scroll to a focused field that is partly in view, even when the
    // bar covers the rest of it: make that room here.
    document.addEventListener("focusin", function (ev) {
      var el = ev.target;
      if (!el.getBoundingClientRect || bar.contains(el)) return;
      if (bar.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) return;  // below the bar
      var over = el.getBoundingClientRect().bottom - bar.getBoundingClientRect().top;
      if (over > 0) window.scrollBy({top: Math.ceil(over) + 8, behavior: "instant"});
    });
  }

  /* Menus built on <details>: Esc and a click elsewhere close them; Esc gives focus back to
     the button that opened the menu. */
  function closeMenu(menu, refocus) {
    if (!menu.open) return;
    menu.open = false;
    if (refocus) menu.querySelector("summary").focus();
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      var inside = menu.contains(document.activeElement);
      closeMenu(menu, true);
      if (inside) ev.preventDefault();
    });
  });
  document.addEventListener("click", function (ev) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu.contains(ev.target)) return;
      var lost = document.activeElement === document.body || menu.contains(document.activeElement);
      closeMenu(menu, lost);
    });
  });

  /* Forms that ask before doing something that cannot be undone. */
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  }, true);

  /* Merge field buttons of a form letter: insert {{ name }} where the user was typing
     (the subject, the message or the HTML version; the message by default). */
  function initMergeChips() {
    var form = $("#campaign-form");
    if (!form) return;
    var last = $("#f-text");
    form.addEventListener("focusin", function (ev) {
      if (ev.target.matches && ev.target.matches("#f-subject, #f-text, #f-html")) last = ev.target;
    });
    form.addEventListener("click", function (ev) {
      var chip = ev.target.closest && ev.target.closest("[data-insert]");
      if (!chip || !last) return;
      var box = last, text = chip.getAttribute("data-insert");
      var start = box.selectionStart === null ? box.value.length : box.selectionStart;
      var end = box.selectionEnd === null ? start : box.selectionEnd;
      box.focus();
      box.setRangeText(text, start, end, "end");
      box.dispatchEvent(new Event("input", {bubbles: true}));
    });
  }

  /* A form letter's progress: the numbers refresh in place (hx-select); when the status
     changes the whole section is reloaded, and a button used to pause, resume or cancel
     hands keyboard focus to the button that replaces it. */
  var progressFocus = false, focusedId = null;
  document.addEventListener("htmx:beforeSwap", function (ev) {
    var target = ev.detail && ev.detail.target;
    if (target && target.id === "progress") {
      progressFocus = target.contains(document.activeElement) && document.activeElement !== document.body;
    }
    /* The recipient list's summary is redrawn when its column is chosen: keep that focus. */
    focusedId = target && target.id === "csv-info" && target.contains(document.activeElement) ?
      document.activeElement.id : null;
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
    focusedId = null;
    var section = $("#progress"), numbers = $("#progress-numbers");
    if (!section || !numbers) return;
    if (progressFocus) {
      progressFocus = false;
      var button = $("#progress-controls button");
      if (button) button.focus();
    }
    var poll = $("#progress-poll");
    if (poll && numbers.getAttribute("data-live") === "no") poll.remove();  // nothing moves now
    var now = numbers.getAttribute("data-status");
    if (now && now !== section.getAttribute("data-status") && window.htmx) {
      section.setAttribute("data-status", now);  // one reload per change
      window.htmx.ajax("GET", section.getAttribute("data-url"), {target: "#progress", swap: "outerHTML"});
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    initAliasForm();
    initMergeChips();
    serverWarning();
    trackStickyBar();
    focusFirstError();
  });
})();
