// Builds `hostServices` on top of one native call: host(op, ...args) performs the typed host
// call `op` (an operation of nex-hostapi, e.g. 'kv.get'; a Rust test checks this file names
// exactly those) and returns its value, or throws an Error whose message says what failed and
// whose `code` says how (`InvalidArgument`, `Denied`, `Unavailable`, `Timeout`, ...). Bytes go
// as Uint8Array/ArrayBuffer, strings as UTF-8, other values as JSON.
(function (host) {
  const kv = {
    get: (key) => host('kv.get', String(key)),
    set: (key, value) => { host('kv.set', String(key), value); },
    delete: (key) => { host('kv.delete', String(key)); },
    keys: () => host('kv.keys'),
    increment: (key, delta) => host('kv.increment', String(key), delta === undefined ? 1 : delta),
  };
  const objectStore = {
    get: (name) => host('objectStore.get', String(name)),
    put: (name, data) => host('objectStore.put', String(name), data),
    delete: (name) => { host('objectStore.delete', String(name)); },
    list: () => host('objectStore.list'),
  };
  const messaging = {
    publish: (subject, payload) => { host('messaging.publish', String(subject), payload); },
    request: (subject, payload, o) =>
      host('messaging.request', String(subject), payload, o && o.timeout),
    requestMany: (subject, payload, o) =>
      host('messaging.requestMany', String(subject), payload, o && o.timeout, o && o.max),
  };
  const request = (method) => (url, body, o) =>
    host('http.request', method, String(url), (o && o.headers) || {}, body);
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
