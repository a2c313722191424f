/* Latchkey browser SDK: Latchkey.connect({ token }) opens the connect popup (call it from a
 * click handler so popup blockers allow it) and returns a promise that resolves with the
 * connection or rejects when the flow fails or the user closes the window. A rejection is an
 * Error whose `code` says why: the connect session's code (`access_denied`, `token_refused`,
 * `flow_expired`, …), `popup_blocked`, or `window_closed`. */
(function () {
  "use strict";
  var script = document.currentScript;
  var defaultBase = script ? new URL(script.src).origin : window.location.origin;

  function connect(options) {
    var token = options && options.token;
    var base = options && options.baseUrl ? new URL(options.baseUrl).origin : defaultBase;
    if (!token) {
      return Promise.reject(failure("invalid_request", "Latchkey.connect needs { token } from a connect session"));
    }
    var url = base + "/connect/" + encodeURIComponent(token);
    // Opened synchronously, before any await, so the click's user activation still holds.
    var popup = window.open(url, "latchkey-connect", "popup,width=520,height=720");
    return new Promise(function (resolve, reject) {
      if (!popup) {
        reject(failure("popup_blocked", "the connect window was blocked by the browser"));
        return;
      }
      var settled = false;
      var timer = null;
      function finish(ok, value) {
        if (settled) return;
        settled = true;
        window.removeEventListener("message", onMessage);
        clearInterval(timer);
        if (ok) resolve(value); else reject(value);
      }
      function onMessage(event) {
        if (event.origin !== base) return;
        var data = event.data;
        if (!data || data.type !== "latchkey:connect") return;
        if (data.ok) finish(true, data.connection);
        else finish(false, fromSession(data.error));
      }
      // The popup may have lost window.opener (Cross-Origin-Opener-Policy): when it closes,
      // ask the connect session how it ended.
      function poll() {
        fetch(url + "/status", { cache: "no-store" })
          .then(function (r) { return r.json(); })
          .then(function (s) {
            if (s.status === "done") finish(true, { id: s.connection_id });
            else if (s.status === "failed") finish(false, fromSession(s.error));
            else finish(false, closed());
          })
          .catch(function () { finish(false, closed()); });
      }
      window.addEventListener("message", onMessage);
      timer = setInterval(function () {
        if (popup.closed) {
          clearInterval(timer);
          // Give a message posted just before closing a moment to arrive.
          setTimeout(function () { if (!settled) poll(); }, 150);
        }
      }, 250);
    });
  }

  function failure(code, message) {
    var error = new Error(message);
    error.code = code;
    return error;
  }
  // A session's error, `{code, message}`.
  function fromSession(error) {
    return failure((error && error.code) || "failed", (error && error.message) || "the connection failed");
  }
  function closed() {
    return failure("window_closed", "the connect window was closed before the connection finished");
  }

  window.Latchkey = { connect: connect };
})();
