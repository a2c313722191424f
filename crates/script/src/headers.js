// Evaluated once per sandbox, before it is hardened (see bindings.rs). Its value is the function
// that makes a header object case-insensitive, as HTTP header names are: `h['Content-Type']`
// reads, writes and deletes the entry the request has as `content-type`, and a write keeps one
// entry per header. The object itself stays a plain object of strings (what JSON.stringify and
// `Object.keys` show); the handler holds no state and no script can reach it.
(() => {
  'use strict';
  const R = Reflect;
  const own = Object.prototype.hasOwnProperty;
  const lower = (key) => String.prototype.toLowerCase.call(key);
  // The own key of `target` that names the same header as `key`, or `key` itself.
  const find = (target, key) => {
    if (typeof key !== 'string' || R.apply(own, target, [key])) return key;
    const wanted = lower(key);
    const keys = R.ownKeys(target);
    for (let i = 0; i < keys.length; i++) {
      if (typeof keys[i] === 'string' && lower(keys[i]) === wanted) return keys[i];
    }
    return key;
  };
  const handler = {
    get: (target, key) => R.get(target, find(target, key)),
    set: (target, key, value) => R.set(target, find(target, key), value),
    has: (target, key) => R.has(target, find(target, key)),
    deleteProperty: (target, key) => {
      let found = find(target, key);
      while (typeof key === 'string' && R.apply(own, target, [found])) {
        if (!R.deleteProperty(target, found)) return false;
        found = find(target, key);
      }
      return true;
    },
    getOwnPropertyDescriptor: (target, key) => R.getOwnPropertyDescriptor(target, find(target, key)),
    defineProperty: (target, key, descriptor) => R.defineProperty(target, find(target, key), descriptor),
  };
  return (object) =>
    object !== null && typeof object === 'object' && !Array.isArray(object)
      ? new Proxy(object, handler)
      : object;
})()
