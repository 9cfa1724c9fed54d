// Fetch and what it speaks: Event/EventTarget, AbortController/AbortSignal, Headers, Blob,
// Request, Response and fetch itself. `native.host` is the host-service call of host_services.rs: a
// request goes through the node's HTTP service, under its allow/deny policy, limits and
// timeouts, and nowhere else. Installed on first use of one of these names (web.rs).
(function (native) {
  'use strict';
  const g = globalThis;
  const define = (name, value) =>
    Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });
  const { DOMException, TextEncoder, TextDecoder, URL, URLSearchParams } = g;
  const KEY = Symbol('internal');

  // ---- Event, EventTarget ------------------------------------------------------------------
  const eventState = new WeakMap();
  class Event {
    constructor(type, init = {}) {
      if (arguments.length === 0) throw new TypeError('The "type" argument must be specified');
      eventState.set(this, {
        type: String(type), target: null, current: null, canceled: false, stop: false,
        bubbles: Boolean(init && init.bubbles), cancelable: Boolean(init && init.cancelable),
        composed: Boolean(init && init.composed), timeStamp: g.performance.now(),
      });
    }
    get type() { return eventState.get(this).type; }
    get target() { return eventState.get(this).target; }
    get currentTarget() { return eventState.get(this).current; }
    get srcElement() { return eventState.get(this).target; }
    get bubbles() { return eventState.get(this).bubbles; }
    get cancelable() { return eventState.get(this).cancelable; }
    get composed() { return eventState.get(this).composed; }
    get defaultPrevented() { const s = eventState.get(this); return s.cancelable && s.canceled; }
    get timeStamp() { return eventState.get(this).timeStamp; }
    get isTrusted() { return false; }
    get eventPhase() { return eventState.get(this).current === null ? 0 : 2; }
    composedPath() { const t = eventState.get(this).current; return t === null ? [] : [t]; }
    preventDefault() { eventState.get(this).canceled = true; }
    stopPropagation() {}
    stopImmediatePropagation() { eventState.get(this).stop = true; }
  }

  class EventTarget {
    #listeners = new Map();
    addEventListener(type, callback, options) {
      if (callback === undefined || callback === null) return;
      type = String(type);
      const o = typeof options === 'object' && options !== null ? options : { capture: Boolean(options) };
      const capture = Boolean(o.capture);
      const signal = o.signal;
      if (signal !== undefined && signal.aborted) return;
      let list = this.#listeners.get(type);
      if (list === undefined) this.#listeners.set(type, (list = []));
      if (list.some((l) => l.callback === callback && l.capture === capture)) return;
      list.push({ callback, capture, once: Boolean(o.once), removed: false });
      if (signal !== undefined) {
        signal.addEventListener('abort', () => this.removeEventListener(type, callback, { capture }), { once: true });
      }
    }
    removeEventListener(type, callback, options) {
      const list = this.#listeners.get(String(type));
      if (list === undefined) return;
      const capture = typeof options === 'object' && options !== null ? Boolean(options.capture) : Boolean(options);
      const i = list.findIndex((l) => l.callback === callback && l.capture === capture);
      if (i >= 0) { list[i].removed = true; list.splice(i, 1); }
    }
    dispatchEvent(event) {
      if (!(event instanceof Event)) throw new TypeError('The "event" argument must be an instance of Event.');
      const s = eventState.get(event);
      s.target = this;
      s.current = this;
      for (const l of [...(this.#listeners.get(s.type) || [])]) {
        if (l.removed) continue;
        if (l.once) this.removeEventListener(s.type, l.callback, { capture: l.capture });
        try {
          if (typeof l.callback === 'function') l.callback.call(this, event);
          else if (l.callback && typeof l.callback.handleEvent === 'function') l.callback.handleEvent(event);
        } catch (e) {
          // As on the Web: a throwing listener is reported and the others still run.
          console.error('Uncaught', e);
        }
        if (s.stop) break;
      }
      s.current = null;
      return !(s.cancelable && s.canceled);
    }
  }

  // ---- AbortController, AbortSignal --------------------------------------------------------
  let abortSignal;
  // When a signal of AbortSignal.timeout is due, and the signals an AbortSignal.any follows.
  const timeoutAt = new WeakMap();
  const sources = new WeakMap();
  const timedOut = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError');
  // Aborts `signal` now if it is a timeout signal past its time (or follows one).
  function expire(signal) {
    if (signal.aborted) return;
    const at = timeoutAt.get(signal);
    if (at !== undefined && g.performance.now() >= at) abortSignal(signal, timedOut());
    for (const s of sources.get(signal) || []) expire(s);
  }
  // The earliest time (performance.now) `signal` or a signal it follows is due to time out.
  function dueAt(signal) {
    let at = timeoutAt.get(signal);
    for (const s of sources.get(signal) || []) {
      const d = dueAt(s);
      if (d !== undefined && (at === undefined || d < at)) at = d;
    }
    return at;
  }
  class AbortSignal extends EventTarget {
    #aborted = false;
    #reason = undefined;
    #onabort = null;
    #handlerSet = false;
    constructor(key) {
      if (key !== KEY) throw new TypeError('Illegal constructor');
      super();
    }
    static {
      abortSignal = (signal, reason) => {
        if (signal.#aborted) return;
        signal.#aborted = true;
        signal.#reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
        signal.dispatchEvent(new Event('abort'));
      };
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    get onabort() { return this.#onabort; }
    set onabort(handler) {
      this.#onabort = typeof handler === 'function' ? handler : null;
      if (!this.#handlerSet) {
        this.#handlerSet = true;
        this.addEventListener('abort', (e) => { if (this.#onabort) this.#onabort.call(this, e); });
      }
    }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    static abort(reason) {
      const s = new AbortSignal(KEY);
      abortSignal(s, reason);
      return s;
    }
    static timeout(ms) {
      const s = new AbortSignal(KEY);
      const delay = Math.max(0, Number(ms) || 0);
      timeoutAt.set(s, g.performance.now() + delay);
      g.setTimeout(() => abortSignal(s, timedOut()), delay);
      return s;
    }
    static any(signals) {
      const s = new AbortSignal(KEY);
      const list = [...signals];
      for (const x of list) {
        if (!(x instanceof AbortSignal)) throw new TypeError('AbortSignal.any: every item must be an AbortSignal');
      }
      const done = list.find((x) => x.aborted);
      if (done !== undefined) abortSignal(s, done.reason);
      else for (const x of list) x.addEventListener('abort', () => abortSignal(s, x.reason), { once: true });
      sources.set(s, list);
      return s;
    }
  }

  class AbortController {
    #signal = new AbortSignal(KEY);
    get signal() { return this.#signal; }
    abort(reason) { abortSignal(this.#signal, reason); }
  }

  // ---- Headers -----------------------------------------------------------------------------
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const headerName = (where, name) => {
    name = String(name);
    if (!TOKEN.test(name)) throw new TypeError(`Headers.${where}: "${name}" is an invalid header name.`);
    return name.toLowerCase();
  };
  const headerValue = (where, value) => {
    const v = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
    if (/[\0\r\n]/.test(v)) throw new TypeError(`Headers.${where}: "${v}" is an invalid header value.`);
    return v;
  };
  let freezeHeaders;
  class Headers {
    #map = new Map();
    #immutable = false;
    constructor(init) {
      if (init === undefined || init === null) return;
      if (typeof init !== 'object') throw new TypeError("Headers constructor: init must be an object (a record or a sequence of pairs)");
      if (init instanceof Headers || typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const p = [...pair];
          if (p.length !== 2) throw new TypeError('Headers constructor: expected name/value pair to be length 2, found ' + p.length + '.');
          this.append(p[0], p[1]);
        }
      } else {
        for (const k of Object.keys(init)) this.append(k, init[k]);
      }
    }
    static {
      freezeHeaders = (h) => { h.#immutable = true; return h; };
    }
    #check(where) { if (this.#immutable) throw new TypeError(`Headers.${where}: these headers are immutable.`); }
    append(name, value) {
      this.#check('append');
      const k = headerName('append', name), v = headerValue('append', value);
      const old = this.#map.get(k);
      this.#map.set(k, old === undefined ? v : `${old}, ${v}`);
    }
    set(name, value) {
      this.#check('set');
      this.#map.set(headerName('set', name), headerValue('set', value));
    }
    get(name) { const v = this.#map.get(headerName('get', name)); return v === undefined ? null : v; }
    has(name) { return this.#map.has(headerName('has', name)); }
    delete(name) { this.#check('delete'); this.#map.delete(headerName('delete', name)); }
    forEach(callback, thisArg) { for (const [k, v] of this) callback.call(thisArg, v, k, this); }
    *entries() { for (const k of [...this.#map.keys()].sort()) yield [k, this.#map.get(k)]; }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
  }

  // ---- Blob ----------------------------------------------------------------------------------
  // A Blob's bytes: immutable once made, so slices and reads copy.
  const blobBytes = new WeakMap();
  function partBytes(part) {
    if (part instanceof Blob) return blobBytes.get(part);
    if (part instanceof ArrayBuffer) return new Uint8Array(part.slice(0));
    if (ArrayBuffer.isView(part)) {
      return new Uint8Array(part.buffer.slice(part.byteOffset, part.byteOffset + part.byteLength));
    }
    return new TextEncoder().encode(String(part));
  }
  const blobOf = (bytes, type) => {
    const b = new Blob([], { type });
    blobBytes.set(b, bytes);
    return b;
  };
  class Blob {
    #type;
    constructor(parts = [], options = {}) {
      if (parts === null || typeof parts !== 'object' || typeof parts[Symbol.iterator] !== 'function') {
        throw new TypeError("Failed to construct 'Blob': The provided value cannot be converted to a sequence.");
      }
      const chunks = [];
      let size = 0;
      for (const p of parts) { const b = partBytes(p); chunks.push(b); size += b.length; }
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) { bytes.set(c, at); at += c.length; }
      blobBytes.set(this, bytes);
      const t = options && options.type !== undefined ? String(options.type) : '';
      this.#type = /^[\x20-\x7e]*$/.test(t) ? t.toLowerCase() : '';
    }
    get size() { return blobBytes.get(this).length; }
    get type() { return this.#type; }
    arrayBuffer() { return Promise.resolve(blobBytes.get(this).slice().buffer); }
    bytes() { return Promise.resolve(blobBytes.get(this).slice()); }
    text() { return Promise.resolve(new TextDecoder().decode(blobBytes.get(this))); }
    slice(start, end, type = '') {
      const n = this.size;
      const at = (v, d) => {
        const i = v === undefined ? d : Math.trunc(Number(v)) || 0;
        return i < 0 ? Math.max(n + i, 0) : Math.min(i, n);
      };
      const s = at(start, 0), e = at(end, n);
      return blobOf(blobBytes.get(this).slice(s, Math.max(s, e)), type);
    }
    get [Symbol.toStringTag]() { return 'Blob'; }
  }

  // ---- File, FormData -------------------------------------------------------------------------
  class File extends Blob {
    #name;
    #lastModified;
    constructor(bits, name, options = {}) {
      if (arguments.length < 2) throw new TypeError(`File constructor: At least 2 arguments required, but only ${arguments.length} passed`);
      super(bits, options);
      this.#name = String(name);
      const lm = options && options.lastModified !== undefined ? Number(options.lastModified) : Date.now();
      this.#lastModified = Number.isFinite(lm) ? Math.trunc(lm) : 0;
    }
    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
    get [Symbol.toStringTag]() { return 'File'; }
  }
  // A FormData entry's value: a string, or a File (a Blob becomes one, named `blob` or as given).
  function entryValue(value, filename, argc, where) {
    if (value instanceof Blob) {
      if (filename === undefined && value instanceof File) return value;
      const name = filename !== undefined ? String(filename) : value instanceof File ? value.name : 'blob';
      const f = new File([], name, { type: value.type, lastModified: value instanceof File ? value.lastModified : undefined });
      blobBytes.set(f, blobBytes.get(value));
      return f;
    }
    if (argc > 2) throw new TypeError(`FormData.${where}: Argument 2 is not a Blob, so it cannot have a filename`);
    return String(value);
  }
  class FormData {
    #entries = [];
    constructor(form) {
      if (form !== undefined) throw new TypeError('FormData constructor: Argument 1 could not be converted to: undefined.');
    }
    #need(where, argc, n) {
      if (argc < n) throw new TypeError(`FormData.${where}: ${n} argument${n > 1 ? 's' : ''} required, but only ${argc} present.`);
    }
    append(name, value, filename) {
      this.#need('append', arguments.length, 2);
      this.#entries.push([String(name), entryValue(value, filename, arguments.length, 'append')]);
    }
    set(name, value, filename) {
      this.#need('set', arguments.length, 2);
      const n = String(name), entry = [n, entryValue(value, filename, arguments.length, 'set')];
      const i = this.#entries.findIndex(([k]) => k === n);
      if (i < 0) { this.#entries.push(entry); return; }
      this.#entries = this.#entries.filter(([k], j) => k !== n || j === i);
      this.#entries[i] = entry;
    }
    get(name) {
      this.#need('get', arguments.length, 1);
      const e = this.#entries.find(([k]) => k === String(name));
      return e === undefined ? null : e[1];
    }
    getAll(name) {
      this.#need('getAll', arguments.length, 1);
      return this.#entries.filter(([k]) => k === String(name)).map(([, v]) => v);
    }
    has(name) { this.#need('has', arguments.length, 1); return this.#entries.some(([k]) => k === String(name)); }
    delete(name) {
      this.#need('delete', arguments.length, 1);
      const n = String(name);
      this.#entries = this.#entries.filter(([k]) => k !== n);
    }
    forEach(callback, thisArg) { for (const [k, v] of this) callback.call(thisArg, v, k, this); }
    *entries() { for (const e of this.#entries.slice()) yield [e[0], e[1]]; }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return 'FormData'; }
  }
  // multipart/form-data as browsers and undici write it: names and string values with their line
  // breaks made CRLF, `"` and line breaks in names and filenames percent-escaped.
  const crlf = (t) => t.replace(/\r(?!\n)|(?<!\r)\n/g, '\r\n');
  const escapeName = (t) => t.replace(/\n/g, '%0A').replace(/\r/g, '%0D').replace(/"/g, '%22');
  function encodeFormData(fd) {
    const rnd = g.crypto.getRandomValues(new Uint32Array(2));
    const hex = (n) => n.toString(16).padStart(8, '0');
    const boundary = `----formdata-nex-${hex(rnd[0])}${hex(rnd[1])}`;
    const enc = new TextEncoder();
    const parts = [];
    for (const [name, value] of fd) {
      let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(crlf(name))}"`;
      if (typeof value === 'string') {
        parts.push(enc.encode(`${head}\r\n\r\n${crlf(value)}\r\n`));
      } else {
        head += `; filename="${escapeName(value.name)}"\r\nContent-Type: ${value.type || 'application/octet-stream'}\r\n\r\n`;
        parts.push(enc.encode(head), blobBytes.get(value), enc.encode('\r\n'));
      }
    }
    parts.push(enc.encode(`--${boundary}--\r\n`));
    return [blobBytes.get(new Blob(parts)), `multipart/form-data; boundary=${boundary}`];
  }
  // The FormData of a body, by its content type: urlencoded or multipart; anything else a
  // TypeError, as in Node.
  function decodeFormData(bytes, type) {
    const mime = type.split(';')[0].trim().toLowerCase();
    const fd = new FormData();
    if (mime === 'application/x-www-form-urlencoded') {
      for (const [k, v] of new URLSearchParams(new TextDecoder().decode(bytes))) fd.append(k, v);
      return fd;
    }
    const m = /;\s*boundary=(?:"([^"]+)"|([^;]+))/i.exec(type);
    if (mime !== 'multipart/form-data' || m === null) {
      throw new TypeError(`Could not parse content as FormData (content type ${JSON.stringify(type)})`);
    }
    const bad = (why) => new TypeError(`Could not parse content as FormData: ${why}`);
    const boundary = m[1] || m[2].trim();
    // RFC 2046: 1 to 70 characters (a longer one would make each search cost more).
    if (boundary.length > 70) throw bad('the boundary is longer than 70 characters');
    // Latin-1 keeps one character per byte, so offsets in the text are offsets in the bytes;
    // made in chunks, not a character at a time.
    let text = '';
    for (let i = 0; i < bytes.length; i += 8192) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    const delimiter = `--${boundary}`;
    let at = text.indexOf(delimiter);
    if (at < 0) throw bad('no boundary');
    const unescape = (t) => t.replace(/%0A/gi, '\n').replace(/%0D/gi, '\r').replace(/%22/g, '"');
    const utf8 = (t) => new TextDecoder().decode(Uint8Array.from(t, (c) => c.charCodeAt(0)));
    for (;;) {
      at += delimiter.length;
      if (text.startsWith('--', at)) return fd;
      if (!text.startsWith('\r\n', at)) throw bad('a boundary is not followed by CRLF');
      const next = text.indexOf(`\r\n${delimiter}`, at);
      if (next < 0) throw bad('a part has no closing boundary');
      // The part's headers end before its closing boundary (else the next part's would be
      // taken for its own).
      const headEnd = text.indexOf('\r\n\r\n', at + 2);
      if (headEnd < 0 || headEnd + 2 > next) throw bad('a part has no end of headers');
      let name = null, filename = null, ctype = '';
      for (const line of text.slice(at + 2, headEnd).split('\r\n')) {
        const colon = line.indexOf(':');
        const key = line.slice(0, colon).trim().toLowerCase(), value = line.slice(colon + 1).trim();
        if (key === 'content-disposition') {
          const n = /;\s*name="([^"]*)"/i.exec(value), f = /;\s*filename="([^"]*)"/i.exec(value);
          if (n) name = unescape(utf8(n[1]));
          if (f) filename = unescape(utf8(f[1]));
        } else if (key === 'content-type') ctype = value;
      }
      if (name === null) throw bad('a part has no name');
      const body = bytes.slice(headEnd + 4, next);
      if (filename === null) fd.append(name, new TextDecoder().decode(body));
      else fd.append(name, blobOf(body, ctype), filename);
      at = next + 2;
    }
  }

  // ---- Body (shared by Request and Response) -------------------------------------------------
  // The body of a Request or Response: its bytes (or null) and whether it was read.
  const bodies = new WeakMap();
  // Bytes and default content type of a body init: a string, bytes, URLSearchParams; anything
  // else as its string.
  function extractBody(body) {
    if (body === undefined || body === null) return [null, null];
    if (typeof body === 'string') return [new TextEncoder().encode(body), 'text/plain;charset=UTF-8'];
    if (body instanceof URLSearchParams) {
      return [new TextEncoder().encode(body.toString()), 'application/x-www-form-urlencoded;charset=UTF-8'];
    }
    if (body instanceof Blob) return [blobBytes.get(body).slice(), body.type === '' ? null : body.type];
    if (body instanceof FormData) return encodeFormData(body);
    if (body instanceof ArrayBuffer) return [new Uint8Array(body.slice(0)), null];
    if (ArrayBuffer.isView(body)) return [new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)), null];
    return [new TextEncoder().encode(String(body)), 'text/plain;charset=UTF-8'];
  }
  const consume = (self) => {
    const b = bodies.get(self);
    if (b.used) return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
    if (b.bytes === null) return Promise.resolve(new Uint8Array(0));
    b.used = true;
    return Promise.resolve(b.bytes.slice());
  };
  class Body {
    get bodyUsed() { return bodies.get(this).used; }
    arrayBuffer() { return consume(this).then((b) => b.buffer); }
    bytes() { return consume(this); }
    text() { return consume(this).then((b) => new TextDecoder().decode(b)); }
    json() { return this.text().then((t) => JSON.parse(t)); }
    blob() {
      const type = this.headers.get('content-type') || '';
      return consume(this).then((b) => blobOf(b, type));
    }
    formData() {
      const type = this.headers.get('content-type') || '';
      return consume(this).then((b) => decodeFormData(b, type));
    }
  }
  const cloneBody = (from, to, where) => {
    const b = bodies.get(from);
    if (b.used) throw new TypeError(`${where}.clone: Body has already been consumed.`);
    bodies.set(to, { bytes: b.bytes, used: false });
  };

  // ---- Request -----------------------------------------------------------------------------
  const METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'];
  const requestState = new WeakMap();
  class Request extends Body {
    constructor(input, init = {}) {
      super();
      if (arguments.length === 0) throw new TypeError('Request constructor: 1 argument required');
      init = init === null || init === undefined ? {} : init;
      let url, method = 'GET', headers, body = null, signal = null;
      if (input instanceof Request) {
        const s = requestState.get(input);
        url = s.url; method = s.method; signal = s.signal;
        headers = new Headers(s.headers);
        const b = bodies.get(input);
        if (b.used) throw new TypeError('Request constructor: the input request\'s body has already been read');
        body = b.bytes;
      } else {
        let parsed;
        try { parsed = new URL(String(input)); } catch (e) {
          throw new TypeError(`Failed to parse URL from ${String(input)}`, { cause: e });
        }
        if (parsed.username || parsed.password) {
          throw new TypeError(`Request cannot be constructed from a URL that includes credentials: ${String(input)}`);
        }
        url = parsed.href;
        headers = new Headers();
      }
      if (init.method !== undefined) {
        const m = String(init.method);
        if (!TOKEN.test(m)) throw new TypeError(`'${m}' is not a valid HTTP method.`);
        const upper = m.toUpperCase();
        if (['CONNECT', 'TRACE', 'TRACK'].includes(upper)) throw new TypeError(`'${m}' HTTP method is unsupported.`);
        method = METHODS.includes(upper) ? upper : m;
      }
      if (init.headers !== undefined) headers = new Headers(init.headers);
      if (init.signal !== undefined && init.signal !== null) {
        if (!(init.signal instanceof AbortSignal)) throw new TypeError("Request constructor: 'signal' must be an AbortSignal");
        signal = init.signal;
      }
      if (init.body !== undefined && init.body !== null) {
        if (method === 'GET' || method === 'HEAD') throw new TypeError('Request with GET/HEAD method cannot have body.');
        const [bytes, type] = extractBody(init.body);
        body = bytes;
        if (type !== null && !headers.has('content-type')) headers.set('content-type', type);
      }
      requestState.set(this, { url, method, headers, signal });
      bodies.set(this, { bytes: body, used: false });
    }
    get url() { return requestState.get(this).url; }
    get method() { return requestState.get(this).method; }
    get headers() { return requestState.get(this).headers; }
    get signal() {
      const s = requestState.get(this);
      if (s.signal === null) s.signal = new AbortController().signal;
      return s.signal;
    }
    get redirect() { return 'follow'; }
    get credentials() { return 'same-origin'; }
    get mode() { return 'cors'; }
    get cache() { return 'default'; }
    get destination() { return ''; }
    get referrer() { return 'about:client'; }
    clone() {
      if (this.bodyUsed) throw new TypeError('Request.clone: Body has already been consumed.');
      return new Request(this);
    }
  }

  // ---- Response ----------------------------------------------------------------------------
  const REASONS = {
    200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content',
    301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified',
    307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request',
    401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
    406: 'Not Acceptable', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone',
    412: 'Precondition Failed', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
    422: 'Unprocessable Entity', 429: 'Too Many Requests', 500: 'Internal Server Error',
    501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  };
  const NULL_BODY = [101, 103, 204, 205, 304];
  const responseState = new WeakMap();
  class Response extends Body {
    constructor(body = null, init = {}) {
      super();
      init = init === null || init === undefined ? {} : init;
      const status = init.status === undefined ? 200 : Number(init.status);
      if (!Number.isInteger(status) || status < 200 || status > 599) {
        throw new RangeError('init["status"] must be in the range of 200 to 599, inclusive.');
      }
      const statusText = init.statusText === undefined ? '' : String(init.statusText);
      const headers = new Headers(init.headers);
      const [bytes, type] = extractBody(body);
      if (bytes !== null && NULL_BODY.includes(status)) {
        throw new TypeError(`Response constructor: Invalid response status code ${status}`);
      }
      if (type !== null && !headers.has('content-type')) headers.set('content-type', type);
      responseState.set(this, { status, statusText, headers, type: 'default', url: '' });
      bodies.set(this, { bytes, used: false });
    }
    get status() { return responseState.get(this).status; }
    get ok() { const s = responseState.get(this).status; return s >= 200 && s <= 299; }
    get statusText() { return responseState.get(this).statusText; }
    get headers() { return responseState.get(this).headers; }
    get type() { return responseState.get(this).type; }
    get url() { return responseState.get(this).url; }
    get redirected() { return false; }
    clone() {
      const r = Object.create(Response.prototype);
      cloneBody(this, r, 'Response');
      const s = responseState.get(this);
      responseState.set(r, { ...s, headers: new Headers(s.headers) });
      return r;
    }
    static json(data, init) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError('Response.json: the value is not JSON serializable');
      const headers = new Headers(init && init.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new Response(text, { ...(init || {}), headers });
    }
    static error() {
      const r = Object.create(Response.prototype);
      responseState.set(r, { status: 0, statusText: '', headers: freezeHeaders(new Headers()), type: 'error', url: '' });
      bodies.set(r, { bytes: null, used: false });
      return r;
    }
    static redirect(url, status = 302) {
      const href = new URL(String(url)).href;
      if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`Invalid status code ${status}`);
      const r = new Response(null, { status, headers: { location: href } });
      freezeHeaders(r.headers);
      return r;
    }
  }
  // The Response of a reply of the HTTP service.
  function fetched(reply, url) {
    const r = Object.create(Response.prototype);
    const headers = freezeHeaders(new Headers(Object.entries(reply.headers)));
    responseState.set(r, { status: reply.status, statusText: REASONS[reply.status] || '', headers, type: 'basic', url });
    bodies.set(r, { bytes: NULL_BODY.includes(reply.status) ? null : reply.body, used: false });
    return r;
  }

  // ---- fetch -------------------------------------------------------------------------------
  function fetch(input, init) {
    return new Promise((resolve, reject) => {
      const request = new Request(input, init);
      const signal = requestState.get(request).signal;
      // A timeout signal already past its time (its timer has not run yet) aborts now.
      if (signal !== null) expire(signal);
      if (signal !== null && signal.aborted) throw signal.reason;
      const protocol = new URL(request.url).protocol;
      if (protocol !== 'http:' && protocol !== 'https:') {
        throw new TypeError(`fetch failed: ${protocol} URLs are not supported (http: and https: only)`);
      }
      const headers = {};
      for (const [k, v] of request.headers) headers[k] = v;
      // The exchange blocks the function, so no timer can fire during it: a timeout signal's
      // time goes to the node as the exchange's limit, which cuts the request short there.
      const due = signal === null ? undefined : dueAt(signal);
      const limit = due === undefined ? undefined : Math.max(0, Math.ceil(due - g.performance.now()));
      let reply;
      try {
        reply = native.host('http.request', request.method, request.url, headers, bodies.get(request).bytes, limit);
      } catch (e) {
        if (signal !== null) {
          expire(signal);
          if (signal.aborted) throw signal.reason;
        }
        const err = new TypeError(`fetch failed: ${e && e.message}`, { cause: e });
        if (e && e.code) err.code = e.code;
        throw err;
      }
      // A timeout signal that expired during the exchange aborts now, and the fetch rejects
      // with its reason.
      if (signal !== null) {
        expire(signal);
        if (signal.aborted) throw signal.reason;
      }
      resolve(fetched(reply, request.url));
    });
  }

  define('Event', Event);
  define('EventTarget', EventTarget);
  define('AbortController', AbortController);
  define('AbortSignal', AbortSignal);
  define('Headers', Headers);
  define('Blob', Blob);
  define('File', File);
  define('FormData', FormData);
  define('Request', Request);
  define('Response', Response);
  define('fetch', fetch);
})
