// Stores the payload as an object named after the last subject token, then lists the bucket.
// `big.<n>` stores n MiB generated in the function instead.
(subject, payload) => {
  const os = this.hostServices.objectStore;
  const tokens = subject.split('.');
  const name = tokens[tokens.length - 1];
  if (tokens[1] === 'big') {
    const size = Number(name) * 1024 * 1024;
    os.put('big', new Uint8Array(size).fill(7));
    const back = os.get('big');
    return { size: back.length, last: back[back.length - 1] };
  }
  if (tokens[1] === 'get') {
    return os.get(name);
  }
  if (tokens[1] === 'delete') {
    os.delete(name);
    return { deleted: name, now: os.get(name) };
  }
  os.put(name, payload);
  return os.list().map((o) => ({ name: o.name, size: o.size }));
};
