// Counts calls per subject in the function's own key-value bucket and replies with the count.
(subject, payload) => {
  const kv = this.hostServices.kv;
  const current = kv.get(subject);
  const n = current ? Number(String.fromCharCode(...current)) + 1 : 1;
  kv.set(subject, String(n));
  return { subject, count: n, keys: kv.keys() };
};
