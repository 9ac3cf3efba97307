// medledger portal: live notifications and upload progress. No inline script anywhere (the
// Content-Security-Policy allows only this file); text is inserted as text, never as HTML.
(function () {
  "use strict";
  var token = document.querySelector('meta[name="csrf-token"]');
  var csrf = token ? token.getAttribute("content") : "";

  var list = document.getElementById("notices");
  if (list && window.EventSource) {
    var source = new EventSource("/events");
    // The portal locked: nothing more is shown here; to the unlock form.
    source.addEventListener("locked", function () {
      source.close();
      window.location.assign("/unlock");
    });
    source.addEventListener("notice", function (ev) {
      var n;
      try { n = JSON.parse(ev.data); } catch (e) { return; }
      var li = document.createElement("li");
      li.textContent = n.text;
      if (n.alarm) { li.className = "alarm"; }
      list.insertBefore(li, list.firstChild);
      document.getElementById("notices-box").hidden = false;
    });
  }

  // The break-glass window's countdown.
  var countdown = document.getElementById("countdown");
  if (countdown) {
    var until = Number(countdown.getAttribute("data-until"));
    var tick = function () {
      var left = Math.max(0, Math.round((until - Date.now()) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      countdown.textContent = left > 0
        ? h + " h " + (m < 10 ? "0" : "") + m + " min " + (s < 10 ? "0" : "") + s + " s more"
        : "no longer: the window has closed";
    };
    tick();
    setInterval(tick, 1000);
  }

  // Uploads (a record, a case file to check): sent with the CSRF header, with progress.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-upload]"), function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var bar = form.querySelector("progress");
      var state = form.querySelector(".upload-state");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("x-csrf-token", csrf);
      bar.hidden = false;
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; }
      };
      xhr.upload.onload = function () { state.textContent = "working on it…"; };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          window.location.assign(xhr.responseURL);
        } else {
          state.textContent = xhr.responseText;
          state.className = "flash error";
        }
      };
      xhr.onerror = function () { state.textContent = "the upload failed"; };
      xhr.send(new FormData(form));
    });
  });
})();
