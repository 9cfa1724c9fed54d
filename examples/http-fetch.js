// Fetches the URL given as the payload (with a header) and replies with the status and body.
(subject, payload) => {
  const url = String.fromCharCode(...payload);
  const r = this.hostServices.http.get(url, undefined, { headers: { 'x-from': 'nex' } });
  return { status: r.status, body: r.response, type: r.headers['content-type'] };
};
