/* Latchkey browser SDK (types: /latchkey.d.ts).
 *
 * Latchkey.connect({ token }) opens the connect popup (call it from a click handler so popup
 * blockers allow it) and returns a promise that resolves with the connection or rejects when
 * the flow fails or the user closes the window. A rejection is an Error whose `code` says why:
 * the connect session's code (`access_denied`, `token_refused`, `flow_expired`, …),
 * `popup_blocked`, or `window_closed`.
 *
 * Lifecycle events (`opened`, `closed`, `success`, `error`) go to `options.onEvent` and to
 * listeners added with Latchkey.on(type, listener).
 *
 * Latchkey.headless({ token }) is for apps that draw their own UI: it resolves with the
 * session's integrations and fields, and lets the app pick an integration, submit values, or
 * open the provider's consent popup. */
(function () {
  "use strict";
  var script = document.currentScript;
  var defaultBase = script ? new URL(script.src).origin : window.location.origin;
  var listeners = { opened: [], closed: [], success: [], error: [] };

  function on(type, listener) {
    if (!listeners[type]) throw new Error("unknown Latchkey event " + type);
    listeners[type].push(listener);
    return function off() {
      var at = listeners[type].indexOf(listener);
      if (at !== -1) listeners[type].splice(at, 1);
    };
  }

  function emit(options, event) {
    var all = [options && options.onEvent].concat(listeners[event.type]);
    for (var i = 0; i < all.length; i++) {
      if (typeof all[i] !== "function") continue;
      try { all[i](event); } catch (e) { setTimeout(function () { throw e; }); }
    }
  }

  function baseOf(options) {
    return options && options.baseUrl ? new URL(options.baseUrl).origin : defaultBase;
  }

  function linkOf(options) {
    return baseOf(options) + "/connect/" + encodeURIComponent(options.token);
  }

  function connect(options) {
    if (!options || !options.token) {
      return Promise.reject(failure("invalid_request", "Latchkey.connect needs { token } from a connect session"));
    }
    return popupFlow(options, linkOf(options));
  }

  // Opens `url` in the connect popup and settles with the flow's outcome.
  function popupFlow(options, url) {
    var base = baseOf(options);
    var status = linkOf(options) + "/status";
    // Opened synchronously, before any await, so the click's user activation still holds.
    var popup = window.open(url, "latchkey-connect", "popup,width=520,height=720");
    return new Promise(function (resolve, reject) {
      if (!popup) {
        var blocked = failure("popup_blocked", "the connect window was blocked by the browser");
        emit(options, { type: "error", error: blocked });
        reject(blocked);
        return;
      }
      emit(options, { type: "opened" });
      var settled = false;
      var timer = null;
      function finish(ok, value) {
        if (settled) return;
        settled = true;
        window.removeEventListener("message", onMessage);
        if (ok) {
          emit(options, { type: "success", connection: value });
          resolve(value);
        } else {
          emit(options, { type: "error", error: value });
          reject(value);
        }
      }
      function onMessage(event) {
        if (event.origin !== base) return;
        var data = event.data;
        if (!data || data.type !== "latchkey:connect") return;
        if (data.ok) finish(true, data.connection);
        else finish(false, fromSession(data.error));
      }
      // The popup may have lost window.opener (Cross-Origin-Opener-Policy): when it closes
      // before a result arrived, ask the connect session how it ended.
      function poll() {
        fetch(status, { cache: "no-store" })
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
          emit(options, { type: "closed" });
          // Give a message posted just before closing a moment to arrive.
          setTimeout(function () { if (!settled) poll(); }, 150);
        }
      }, 250);
    });
  }

  // Headless mode: the session as data, for an app's own UI.
  function headless(options) {
    if (!options || !options.token) {
      return Promise.reject(failure("invalid_request", "Latchkey.headless needs { token } from a connect session"));
    }
    return describe(options, null);
  }

  function describe(options, integration) {
    var url = linkOf(options) + "/session" + (integration ? "?integration=" + encodeURIComponent(integration) : "");
    return request(url, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (body) {
      return session(options, body, integration);
    });
  }

  function session(options, body, integration) {
    var query = integration ? "?integration=" + encodeURIComponent(integration) : "";
    return {
      lang: body.lang,
      expiresAt: body.expires_at,
      choices: body.choices || [],
      integration: body.integration || null,
      connector: body.connector || null,
      name: body.name || null,
      redirect: !!body.redirect,
      fields: body.fields || [],
      pick: function (id) { return describe(options, id); },
      submit: function (values) {
        var form = new URLSearchParams();
        Object.keys(values || {}).forEach(function (k) { form.append(k, values[k]); });
        if (body.redirect) {
          // Config a consent redirect needs: the popup posts it and goes on to the provider.
          return Promise.reject(failure("invalid_request", "this integration connects through the provider: call authorize()"));
        }
        return request(linkOf(options) + query, {
          method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
          body: form.toString()
        }).then(function (result) {
          emit(options, { type: "success", connection: result.connection });
          return result.connection;
        }, function (error) {
          emit(options, { type: "error", error: error });
          throw error;
        });
      },
      // Opens the provider's consent in the popup; call it from a click handler.
      authorize: function () { return popupFlow(options, linkOf(options) + query); }
    };
  }

  function request(url, init) {
    return fetch(url, init).then(function (r) {
      return r.json().then(function (body) {
        if (r.ok) return body;
        var e = fromSession(body.error);
        if (body.error && body.error.fields) e.fields = body.error.fields;
        throw e;
      });
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

  window.Latchkey = { connect: connect, headless: headless, on: on };
})();
