// Builds `hostServices` on top of one native call: host(op, argsJson, ...binaryParts) returns
// [resultJson, ...binaryParts as Uint8Array] or throws an Error whose message says what failed.
(function (host) {
  const bin = (v) =>
    v === undefined || v === null || typeof v === 'string' || v instanceof Uint8Array || v instanceof ArrayBuffer
      ? v
      : JSON.stringify(v);
  const call = (op, args, ...data) => {
    const r = host(op, JSON.stringify(args || {}), ...data.map(bin));
    return { value: JSON.parse(r[0]), data: r.slice(1) };
  };
  const kv = {
    get: (key) => { const r = call('kv.get', { key: String(key) }); return r.value.found ? r.data[0] : null; },
    set: (key, value) => { call('kv.set', { key: String(key) }, value); },
    delete: (key) => { call('kv.delete', { key: String(key) }); },
    keys: () => call('kv.keys').value,
  };
  const objectStore = {
    get: (name) => { const r = call('objectStore.get', { name: String(name) }); return r.value.found ? r.data[0] : null; },
    put: (name, data) => call('objectStore.put', { name: String(name) }, data).value,
    delete: (name) => { call('objectStore.delete', { name: String(name) }); },
    list: () => call('objectStore.list').value,
  };
  const opts = (o) => ({ timeout_ms: o && o.timeout, max: o && o.max });
  const messaging = {
    publish: (subject, payload) => { call('messaging.publish', { subject: String(subject) }, payload); },
    request: (subject, payload, o) =>
      call('messaging.request', Object.assign({ subject: String(subject) }, opts(o)), payload).data[0],
    requestMany: (subject, payload, o) =>
      call('messaging.requestMany', Object.assign({ subject: String(subject) }, opts(o)), payload).data,
  };
  const request = (method) => (url, body, o) => {
    const r = call('http.request', { method, url: String(url), headers: (o && o.headers) || {} }, body);
    return { status: r.value.status, headers: r.value.headers, response: r.value.text, body: r.data[0] };
  };
  const http = {
    get: request('GET'), post: request('POST'), put: request('PUT'), patch: request('PATCH'),
    del: request('DELETE'), delete: request('DELETE'), head: request('HEAD'),
  };
  const services = { http, kv, objectStore, messaging };
  for (const svc of Object.values(services)) {
    for (const m of Object.keys(svc)) {
      svc[m + 'Async'] = (...a) => new Promise((resolve, reject) => {
        try { resolve(svc[m](...a)); } catch (e) { reject(e); }
      });
    }
  }
  return services;
})
