// The WinterTC Minimum Common API, first part: what a function needs to turn bytes into text and
// back, encode base64, make random ids and read a clock. Installed before the function's code;
// `native` holds the Rust helpers (utf-8, randomness, the clock) and is not visible afterwards.
(function (native) {
  'use strict';
  const g = globalThis;
  const define = (name, value) =>
    Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  function bytesOf(input) {
    if (input === undefined || input === null) return new Uint8Array(0);
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeError('The "input" argument must be an ArrayBuffer or an ArrayBufferView');
  }

  // The legacy numeric codes of the names that have one.
  const DOM_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };

  class DOMException extends Error {
    constructor(message = '', name = 'Error') {
      super(message);
      Object.defineProperty(this, 'name', { value: String(name), configurable: true, writable: true });
    }
    get code() { return DOM_CODES[this.name] || 0; }
  }

  const wellFormed = (s) => (typeof s.toWellFormed === 'function' ? s.toWellFormed() : s);

  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') { return native.utf8Encode(wellFormed(String(input))); }
    encodeInto(input, dest) {
      if (!(dest instanceof Uint8Array)) throw new TypeError('The destination must be a Uint8Array');
      const s = wellFormed(String(input));
      let read = 0, written = 0;
      for (const ch of s) {
        const bytes = native.utf8Encode(ch);
        if (written + bytes.length > dest.length) break;
        dest.set(bytes, written);
        written += bytes.length;
        read += ch.length;
      }
      return { read, written };
    }
  }

  const UTF8_LABELS = ['utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8'];

  // Where the incomplete utf-8 sequence at the end of `b` starts (b.length when there is none).
  function incompleteTail(b) {
    const n = b.length;
    for (let i = n - 1; i >= 0 && i >= n - 3; i--) {
      const x = b[i];
      if ((x & 0xc0) === 0x80) continue;
      const need = x >= 0xf0 ? (x <= 0xf4 ? 4 : 1) : x >= 0xe0 ? 3 : x >= 0xc2 ? 2 : 1;
      return n - i < need ? i : n;
    }
    return n;
  }

  class TextDecoder {
    #fatal; #ignoreBOM;
    #pending = null; // bytes of a sequence cut by the end of a streamed chunk
    #started = false; // text has come out of this stream (its BOM, if any, is handled)
    constructor(label = 'utf-8', options = {}) {
      if (!UTF8_LABELS.includes(String(label).trim().toLowerCase())) {
        throw new RangeError(`The encoding label provided ('${label}') is not supported: nex decodes utf-8`);
      }
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }
    get encoding() { return 'utf-8'; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input, options) {
      const stream = Boolean(options && options.stream);
      let bytes = bytesOf(input);
      if (this.#pending !== null) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = null;
      }
      if (stream) {
        const cut = incompleteTail(bytes);
        if (cut < bytes.length) {
          this.#pending = bytes.slice(cut);
          bytes = bytes.subarray(0, cut);
        }
      }
      let text;
      try {
        text = native.utf8Decode(bytes, this.#fatal);
      } catch (e) {
        this.#pending = null;
        this.#started = false;
        throw e;
      }
      if (!this.#started && text.length > 0) {
        if (!this.#ignoreBOM && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        this.#started = true;
      }
      if (!stream) this.#started = false;
      return text;
    }
  }

  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

  function btoa(data) {
    if (arguments.length === 0) throw new TypeError('btoa: 1 argument required');
    const s = String(data);
    let out = '';
    for (let i = 0; i < s.length; i += 3) {
      const c = [s.charCodeAt(i), s.charCodeAt(i + 1), s.charCodeAt(i + 2)];
      for (const x of c) if (x > 0xff) throw new DOMException('btoa: the string has a character outside Latin-1', 'InvalidCharacterError');
      const n = (c[0] << 16) | ((c[1] || 0) << 8) | (c[2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
        (i + 1 < s.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < s.length ? B64[n & 63] : '=');
    }
    return out;
  }

  function atob(data) {
    if (arguments.length === 0) throw new TypeError('atob: 1 argument required');
    let s = String(data).replace(/[\t\n\f\r ]/g, '');
    if (s.length % 4 === 0) s = s.replace(/==?$/, '');
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
      throw new DOMException('atob: the string is not valid base64', 'InvalidCharacterError');
    }
    let out = '', bits = 0, acc = 0;
    for (const ch of s) {
      acc = (acc << 6) | B64_INDEX.get(ch);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((acc >> bits) & 0xff);
      }
    }
    return out;
  }

  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array,
    Int32Array, Uint32Array, BigInt64Array, BigUint64Array];

  const crypto = {
    getRandomValues(array) {
      if (!INTEGER_ARRAYS.some((T) => array instanceof T)) {
        throw new DOMException('getRandomValues: an integer typed array is required', 'TypeMismatchError');
      }
      if (array.byteLength > 65536) {
        throw new DOMException('getRandomValues: at most 65536 bytes at a time', 'QuotaExceededError');
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(native.randomBytes(array.byteLength));
      return array;
    },
    randomUUID() {
      const b = native.randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  };

  // crypto.subtle: digests and HMAC (webhook signatures), the everyday part of Web Crypto.
  const hashName = (alg) => (typeof alg === 'string' ? alg : alg && alg.name);
  class CryptoKey {
    #raw;
    constructor(raw, algorithm, extractable, usages) {
      this.#raw = raw;
      Object.defineProperties(this, {
        type: { value: 'secret', enumerable: true },
        algorithm: { value: algorithm, enumerable: true },
        extractable: { value: extractable, enumerable: true },
        usages: { value: usages, enumerable: true },
      });
    }
    static _raw(key, usage) {
      if (!(key instanceof CryptoKey)) throw new TypeError('the key must be a CryptoKey');
      if (!key.usages.includes(usage)) throw new DOMException(`the key may not be used to ${usage}`, 'InvalidAccessError');
      return key.#raw;
    }
    static _export(key) {
      if (!key.extractable) throw new DOMException('the key is not extractable', 'InvalidAccessError');
      return key.#raw;
    }
  }
  const asPromise = (f) => new Promise((resolve) => resolve(f()));
  const toBuffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);
  const copyOf = (input) => new Uint8Array(bytesOf(input));
  const subtle = {
    digest(algorithm, data) {
      return asPromise(() => toBuffer(native.digest(String(hashName(algorithm)), copyOf(data))));
    },
    importKey(format, keyData, algorithm, extractable, usages) {
      return asPromise(() => {
        if (format !== 'raw') throw new DOMException(`key format ${format} is not supported: use 'raw'`, 'NotSupportedError');
        if (hashName(algorithm) !== 'HMAC') throw new DOMException(`algorithm ${hashName(algorithm)} is not supported: use HMAC`, 'NotSupportedError');
        const hash = String(hashName(algorithm.hash));
        native.digest(hash, new Uint8Array(0));
        const raw = copyOf(keyData);
        const bad = [...usages].filter((u) => u !== 'sign' && u !== 'verify');
        if (bad.length) throw new SyntaxError(`HMAC keys cannot be used to ${bad.join(', ')}`);
        return new CryptoKey(raw, { name: 'HMAC', hash: { name: hash.toUpperCase() }, length: raw.length * 8 }, Boolean(extractable), [...usages]);
      });
    },
    exportKey(format, key) {
      return asPromise(() => {
        if (format !== 'raw') throw new DOMException(`key format ${format} is not supported: use 'raw'`, 'NotSupportedError');
        return toBuffer(new Uint8Array(CryptoKey._export(key)));
      });
    },
    sign(algorithm, key, data) {
      return asPromise(() => {
        const raw = CryptoKey._raw(key, 'sign');
        return toBuffer(native.hmacSign(key.algorithm.hash.name, raw, copyOf(data)));
      });
    },
    verify(algorithm, key, signature, data) {
      return asPromise(() => {
        const raw = CryptoKey._raw(key, 'verify');
        return native.hmacVerify(key.algorithm.hash.name, raw, copyOf(signature), copyOf(data));
      });
    },
  };
  crypto.subtle = subtle;

  const timeOrigin = Date.now() - native.now();
  const performance = { now: () => native.now(), timeOrigin, toJSON: () => ({ timeOrigin }) };

  function queueMicrotask(callback) {
    if (typeof callback !== 'function') throw new TypeError('queueMicrotask: the callback must be a function');
    Promise.resolve().then(() => callback());
  }

  class URLSearchParams {
    #pairs = [];
    #onChange = null;
    constructor(init = '') {
      if (typeof init === 'object' && init !== null) {
        const entries = typeof init[Symbol.iterator] === 'function' ? init : Object.entries(init);
        for (const pair of entries) {
          const p = [...pair];
          if (p.length !== 2) throw new TypeError('URLSearchParams: each pair needs a name and a value');
          this.#pairs.push([String(p[0]), String(p[1])]);
        }
      } else {
        const s = String(init);
        this.#pairs = native.formParse(s.startsWith('?') ? s.slice(1) : s);
      }
    }
    static _bound(query, onChange) {
      const p = new URLSearchParams(query);
      p.#onChange = onChange;
      return p;
    }
    _reset(query) { this.#pairs = native.formParse(query.startsWith('?') ? query.slice(1) : query); }
    #changed() { if (this.#onChange) this.#onChange(this.toString()); }
    get size() { return this.#pairs.length; }
    append(name, value) { this.#pairs.push([String(name), String(value)]); this.#changed(); }
    delete(name, value) {
      this.#pairs = this.#pairs.filter(([k, v]) => !(k === String(name) && (value === undefined || v === String(value))));
      this.#changed();
    }
    get(name) { const p = this.#pairs.find(([k]) => k === String(name)); return p ? p[1] : null; }
    getAll(name) { return this.#pairs.filter(([k]) => k === String(name)).map(([, v]) => v); }
    has(name, value) {
      return this.#pairs.some(([k, v]) => k === String(name) && (value === undefined || v === String(value)));
    }
    set(name, value) {
      name = String(name); value = String(value);
      const i = this.#pairs.findIndex(([k]) => k === name);
      if (i < 0) this.#pairs.push([name, value]);
      else this.#pairs = this.#pairs.filter(([k], j) => j <= i || k !== name).map((p, j) => (j === i ? [name, value] : p));
      this.#changed();
    }
    sort() {
      this.#pairs = this.#pairs.map((p, i) => [p, i]).sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1])).map(([p]) => p);
      this.#changed();
    }
    forEach(callback, thisArg) { for (const [k, v] of this.#pairs) callback.call(thisArg, v, k, this); }
    *entries() { for (const [k, v] of this.#pairs) yield [k, v]; }
    *keys() { for (const [k] of this.#pairs) yield k; }
    *values() { for (const [, v] of this.#pairs) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return native.formSerialize(this.#pairs); }
  }

  class URL {
    #parts;
    #params = null;
    constructor(url, base) {
      this.#parts = native.urlParse(String(url), base === undefined ? undefined : String(base));
    }
    static canParse(url, base) {
      try { native.urlParse(String(url), base === undefined ? undefined : String(base)); return true; } catch { return false; }
    }
    static parse(url, base) { try { return new URL(url, base); } catch { return null; } }
    #set(part, value) {
      this.#parts = native.urlSet(this.#parts[0], part, String(value));
      if (this.#params) this.#params._reset(this.search);
    }
    get searchParams() {
      if (!this.#params) {
        this.#params = URLSearchParams._bound(this.search, (q) => {
          this.#parts = native.urlSet(this.#parts[0], 'search', q);
        });
      }
      return this.#params;
    }
    get href() { return this.#parts[0]; }
    set href(v) { this.#set('href', v); }
    get origin() { return this.#parts[1]; }
    get protocol() { return this.#parts[2]; }
    set protocol(v) { this.#set('protocol', v); }
    get username() { return this.#parts[3]; }
    set username(v) { this.#set('username', v); }
    get password() { return this.#parts[4]; }
    set password(v) { this.#set('password', v); }
    get host() { return this.#parts[5]; }
    set host(v) { this.#set('host', v); }
    get hostname() { return this.#parts[6]; }
    set hostname(v) { this.#set('hostname', v); }
    get port() { return this.#parts[7]; }
    set port(v) { this.#set('port', v); }
    get pathname() { return this.#parts[8]; }
    set pathname(v) { this.#set('pathname', v); }
    get search() { return this.#parts[9]; }
    set search(v) { this.#set('search', v); }
    get hash() { return this.#parts[10]; }
    set hash(v) { this.#set('hash', v); }
    toString() { return this.#parts[0]; }
    toJSON() { return this.#parts[0]; }
  }
  // structuredClone: the structured clone algorithm over the types a function meets (no
  // transfer list).
  const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const VIEWS = { Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
    Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, DataView };
  function structuredClone(value, options) {
    if (arguments.length === 0) throw new TypeError('structuredClone: 1 argument required');
    if (options && options.transfer && [...options.transfer].length > 0) {
      throw new DOMException('structuredClone: transfer is not supported', 'DataCloneError');
    }
    const seen = new Map();
    const fail = (v) => {
      throw new DOMException(`${typeof v === 'symbol' ? v.toString() : String(v)} could not be cloned.`, 'DataCloneError');
    };
    const clone = (v) => {
      if (typeof v === 'symbol' || typeof v === 'function') fail(v);
      if (v === null || typeof v !== 'object') return v;
      if (seen.has(v)) return seen.get(v);
      const tag = Object.prototype.toString.call(v).slice(8, -1);
      const keep = (out) => { seen.set(v, out); return out; };
      let out;
      switch (tag) {
        case 'Boolean': case 'Number': case 'String': case 'BigInt':
          return keep(Object(v.valueOf()));
        case 'Date': return keep(new Date(v.getTime()));
        case 'RegExp': return keep(new RegExp(v.source, v.flags));
        case 'ArrayBuffer': return keep(v.slice(0));
        case 'Map':
          out = keep(new Map());
          for (const [k, x] of v) out.set(clone(k), clone(x));
          return out;
        case 'Set':
          out = keep(new Set());
          for (const x of v) out.add(clone(x));
          return out;
        case 'Error': {
          const C = ERRORS[v.name] || Error;
          out = keep(Object.create(C.prototype));
          for (const key of ['message', 'stack']) {
            if (typeof v[key] === 'string') Object.defineProperty(out, key, { value: v[key], writable: true, configurable: true });
          }
          if ('cause' in v) Object.defineProperty(out, 'cause', { value: clone(v.cause), writable: true, configurable: true });
          return out;
        }
        case 'Array':
          out = keep(new Array(v.length));
          break;
        case 'Object':
          out = keep({});
          break;
        default:
          if (ArrayBuffer.isView(v) && VIEWS[tag]) {
            const buffer = clone(v.buffer);
            const T = VIEWS[tag];
            return keep(tag === 'DataView' ? new T(buffer, v.byteOffset, v.byteLength)
              : new T(buffer, v.byteOffset, v.length));
          }
          if (typeof v.then === 'function' || tag === 'Promise' || tag === 'WeakMap' || tag === 'WeakSet') fail(`#<${tag}>`);
          out = keep({});
      }
      for (const key of Object.keys(v)) out[key] = clone(v[key]);
      return out;
    };
    return clone(value);
  }

  // Timers live within one call: the runtime fires them while the call's Promise is pending
  // (see `settle` in lib.rs), never past the call's deadline, and clears what is left when the
  // call ends.
  const timers = new Map();
  let nextTimer = 1;
  function schedule(callback, delay, args, repeat) {
    if (typeof callback !== 'function') throw new TypeError('the timer callback must be a function');
    const id = nextTimer++;
    native.armed();
    const ms = Math.max(0, Number(delay) || 0);
    timers.set(id, { at: native.now() + ms, callback, args, every: repeat ? Math.max(ms, 1) : 0 });
    return id;
  }
  const timerControl = {
    // Milliseconds until the earliest timer is due, or -1 when there is none.
    wait() {
      let at = Infinity;
      for (const t of timers.values()) at = Math.min(at, t.at);
      return at === Infinity ? -1 : Math.max(0, at - native.now());
    },
    // Runs the earliest timer (in the order they were set, among equals).
    fire() {
      let id = 0, first = null;
      for (const [k, t] of timers) if (first === null || t.at < first.at) { first = t; id = k; }
      if (first === null) return;
      if (first.every) first.at = native.now() + first.every; else timers.delete(id);
      first.callback(...first.args);
    },
    clear() { timers.clear(); },
  };

  define('setTimeout', (callback, delay, ...args) => schedule(callback, delay, args, false));
  define('setInterval', (callback, delay, ...args) => schedule(callback, delay, args, true));
  define('clearTimeout', (id) => { timers.delete(id); });
  define('clearInterval', (id) => { timers.delete(id); });
  define('URL', URL);
  define('URLSearchParams', URLSearchParams);
  define('DOMException', DOMException);
  define('TextEncoder', TextEncoder);
  define('TextDecoder', TextDecoder);
  define('btoa', btoa);
  define('atob', atob);
  define('crypto', crypto);
  define('CryptoKey', CryptoKey);
  define('performance', performance);
  define('queueMicrotask', queueMicrotask);
  define('structuredClone', structuredClone);
  return timerControl;
})
