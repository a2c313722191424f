// Run once per sandbox, after our functions are installed and before the first call (see
// sandbox.rs). Leaves every object a script can reach without creating it frozen, and returns the
// function that, after each call, deletes what the call added to the global object.
//
// Evaluated as a global script whose completion value is the returned arrow function; nothing it
// declares outlives it.
(() => {
  'use strict';
  const g = globalThis;
  const {
    freeze,
    getPrototypeOf,
    getOwnPropertyDescriptor,
    defineProperty,
    isExtensible,
    setPrototypeOf,
  } = Object;
  const { ownKeys, deleteProperty } = Reflect;
  const reflectDefine = Reflect.defineProperty;
  const fail = (what) => {
    throw new TypeError('hardening: ' + what);
  };

  // 1. What keeps or runs a call's data beyond the call: finalization callbacks and weak
  // references (run or observable at a later GC), and Error.prepareStackTrace/stackTraceLimit
  // (accessors that store their value in the context, not in the frozen Error constructor).
  for (const name of ['WeakRef', 'FinalizationRegistry']) {
    if (!deleteProperty(g, name)) fail('cannot delete ' + name);
  }
  for (const name of ['prepareStackTrace', 'stackTraceLimit']) {
    if (!deleteProperty(g.Error, name)) fail('cannot delete Error.' + name);
  }

  // 2. Every object reachable from the global object, through own property values, getters,
  // setters and prototypes, plus the intrinsics that only instances lead to.
  const hidden = [
    getPrototypeOf(function* () {}),
    getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}),
    getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map()[Symbol.iterator]()),
    getPrototypeOf(new Set()[Symbol.iterator]()),
    getPrototypeOf(''[Symbol.iterator]()),
    getPrototypeOf('a'.matchAll(/a/g)),
    getPrototypeOf(Int8Array),
    getOwnPropertyDescriptor(
      (function () {
        'use strict';
        return arguments;
      })(),
      'callee',
    ).get,
  ];
  if (typeof g.Iterator === 'function') {
    const Iterator = g.Iterator;
    if (typeof Iterator.from === 'function') {
      hidden.push(getPrototypeOf(Iterator.from({ next() {} })));
    }
    if (typeof Iterator.prototype.map === 'function') {
      hidden.push(getPrototypeOf([].values().map((x) => x)));
    }
    if (typeof Iterator.concat === 'function') hidden.push(getPrototypeOf(Iterator.concat()));
  }

  const seen = new Set([g]);
  const reached = [];
  const visit = (value) => {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return;
    if (seen.has(value)) return;
    seen.add(value);
    reached.push(value);
  };
  const visitProperties = (object) => {
    const keys = ownKeys(object);
    const isFunction = typeof object === 'function';
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      // A built-in function's own `length` and `name` are numbers and strings (half the keys
      // there are; skipping them halves the time this takes).
      if (isFunction && (key === 'length' || key === 'name')) continue;
      const desc = getOwnPropertyDescriptor(object, key);
      visit(desc.value);
      visit(desc.get);
      visit(desc.set);
    }
  };
  visit(getPrototypeOf(g));
  visitProperties(g);
  hidden.forEach(visit);
  for (let i = 0; i < reached.length; i++) {
    visit(getPrototypeOf(reached[i]));
    visitProperties(reached[i]);
  }

  // 3. The override mistake: once a prototype is frozen, assigning one of its properties on an
  // object inheriting it (`this.name = ...` in an Error subclass, `obj.toString = ...`,
  // `counts[word] = ...` with word 'constructor') would silently fail. So, as SES's
  // enablePropertyOverrides does, each writable data property of a prototype becomes an
  // accessor: the getter returns the original value; the setter, on another object, defines
  // (or sets) an own data property there, and on the prototype itself does nothing, as a
  // non-writable property would in sloppy code.
  const prototypes = new Set([getPrototypeOf(g)]);
  for (const object of reached) {
    const proto = getPrototypeOf(object);
    if (proto !== null) prototypes.add(proto);
    if (typeof object === 'function') {
      const desc = getOwnPropertyDescriptor(object, 'prototype');
      if (desc && 'value' in desc && desc.value !== null && typeof desc.value === 'object') {
        prototypes.add(desc.value);
      }
    }
  }
  const accessor = (home, key, value) => {
    const methods = {
      get() {
        return value;
      },
      set(newValue) {
        if (this === home || this === null || this === undefined) return;
        if (typeof this !== 'object' && typeof this !== 'function') return;
        const own = getOwnPropertyDescriptor(this, key);
        if (own === undefined) {
          reflectDefine(this, key, {
            value: newValue,
            writable: true,
            enumerable: true,
            configurable: true,
          });
        } else if ('value' in own && own.writable) {
          reflectDefine(this, key, { value: newValue });
        }
      },
    };
    freeze(methods.get);
    freeze(methods.set);
    return methods;
  };
  for (const proto of prototypes) {
    const keys = ownKeys(proto);
    for (let i = 0; i < keys.length; i++) {
      const desc = getOwnPropertyDescriptor(proto, keys[i]);
      if (!desc.writable || !desc.configurable) continue; // accessors have no `writable`
      const methods = accessor(proto, keys[i], desc.value);
      defineProperty(proto, keys[i], {
        get: methods.get,
        set: methods.set,
        enumerable: desc.enumerable,
        configurable: false,
      });
    }
  }

  // 4. Freeze them all. The global object itself stays extensible (a call's globals are added to
  // it and deleted after), but what it held moves to a frozen object that becomes its prototype:
  // names still resolve, none can change, and after a call the global object's own properties
  // are only the few that can not be moved (undefined, NaN, Infinity) and the call's own. Its
  // data properties become accessors as above, so that a script assigning a built-in's name
  // (`btoa = ...`) gets a global of its own, for its call.
  for (const object of reached) freeze(object);
  const base = { __proto__: getPrototypeOf(g) };
  for (const key of ownKeys(g)) {
    const desc = getOwnPropertyDescriptor(g, key);
    if (!desc.configurable) continue;
    if ('value' in desc) {
      const methods = accessor(base, key, desc.value);
      defineProperty(base, key, {
        get: methods.get,
        set: methods.set,
        enumerable: desc.enumerable,
        configurable: false,
      });
    } else {
      desc.configurable = false;
      defineProperty(base, key, desc);
    }
    if (!deleteProperty(g, key)) fail('cannot move global ' + String(key));
  }
  freeze(base);
  setPrototypeOf(g, base);

  // 5. After each call: delete every global the call added, and say whether the global object
  // is as it was (a property that cannot be deleted, a new prototype or a global object no
  // longer extensible mean this sandbox must not serve another call).
  const baseline = ownKeys(g);
  const isBaseline = (key) => {
    for (let i = 0; i < baseline.length; i++) if (baseline[i] === key) return true;
    return false;
  };
  const cleanup = () => {
    let clean = true;
    const keys = ownKeys(g);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      // Baseline keys can not be deleted, so (but after integer keys) they stay first.
      if (i < baseline.length && key === baseline[i]) continue;
      if (!deleteProperty(g, key) && !isBaseline(key)) clean = false;
    }
    return clean && getPrototypeOf(g) === base && isExtensible(g);
  };
  return freeze(cleanup);
})()
