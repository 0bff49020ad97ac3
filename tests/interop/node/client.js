// The interop client cases of doc/interop-test-descriptions.md on grpc-js.
// Usage: node client.js <host:port> <case> [<case>...]. Prints one JSON line per case:
// {"case": name, "ok": true} or {"case": name, "ok": false, "error": "..."}.
'use strict';

const assert = require('assert');
const { grpc, loadTesting, ECHO_INITIAL, ECHO_TRAILING } = require('./common');

const testing = loadTesting();
const SIZES = { requests: [27182, 8, 1828, 45904], responses: [31415, 9, 2653, 58979] };
const SPECIAL = '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \ud83d\ude08\t\n';

function payload(size) {
  return { type: 'COMPRESSABLE', body: Buffer.alloc(size) };
}

function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

function unary(client, method, request, metadata = new grpc.Metadata(), options = {}) {
  return new Promise((resolve) => {
    let initial = null;
    let value = null;
    let error = null;
    const call = client[method](request, metadata, { deadline: deadline(10), ...options }, (err, v) => {
      error = err;
      value = v;
    });
    call.on('metadata', (m) => { initial = m; });
    call.on('status', (status) => resolve({ value, error, status, initial }));
  });
}

// Reads a stream-response call to its end; resolves with the messages and the status.
function collect(call) {
  return new Promise((resolve) => {
    const messages = [];
    let initial = null;
    call.on('metadata', (m) => { initial = m; });
    call.on('data', (m) => messages.push(m));
    call.on('error', () => {});
    call.on('status', (status) => resolve({ messages, status, initial }));
  });
}

function expectCode(status, code, details) {
  assert.strictEqual(status.code, code, `expected status ${code}, got ${status.code}: ${status.details}`);
  if (details !== undefined) assert.strictEqual(status.details, details);
}

function echoMetadata() {
  const metadata = new grpc.Metadata();
  metadata.set(ECHO_INITIAL, 'test_initial_metadata_value');
  metadata.set(ECHO_TRAILING, Buffer.from([0xab, 0xab, 0xab]));
  return metadata;
}

function checkEcho(initial, trailing) {
  assert.deepStrictEqual(initial.get(ECHO_INITIAL), ['test_initial_metadata_value']);
  assert.deepStrictEqual(trailing.get(ECHO_TRAILING), [Buffer.from([0xab, 0xab, 0xab])]);
}

function fullDuplexRequest(size, requestSize, status) {
  const request = { response_parameters: [{ size }], payload: payload(requestSize) };
  if (status) request.response_status = status;
  return request;
}

const CASES = {
  async empty_unary(c) {
    const r = await unary(c.test, 'EmptyCall', {});
    expectCode(r.status, grpc.status.OK);
    assert.deepStrictEqual(r.value, {});
  },
  async large_unary(c) {
    const r = await unary(c.test, 'UnaryCall', { response_size: 314159, payload: payload(271828) });
    expectCode(r.status, grpc.status.OK);
    assert.strictEqual(r.value.payload.body.length, 314159);
    assert.ok(r.value.payload.body.every((b) => b === 0));
  },
  async client_streaming(c) {
    const result = await new Promise((resolve) => {
      const call = c.test.StreamingInputCall({ deadline: deadline(10) }, (error, value) => resolve({ error, value }));
      for (const size of SIZES.requests) call.write({ payload: payload(size) });
      call.end();
    });
    assert.ifError(result.error);
    assert.strictEqual(result.value.aggregated_payload_size, 74922);
  },
  async server_streaming(c) {
    const call = c.test.StreamingOutputCall(
      { response_parameters: SIZES.responses.map((size) => ({ size })) },
      { deadline: deadline(10) },
    );
    const r = await collect(call);
    expectCode(r.status, grpc.status.OK);
    assert.deepStrictEqual(r.messages.map((m) => m.payload.body.length), SIZES.responses);
  },
  async ping_pong(c) {
    const call = c.test.FullDuplexCall({ deadline: deadline(10) });
    const done = collect(call);
    const received = [];
    for (let i = 0; i < 4; i++) {
      const next = new Promise((resolve) => call.once('data', resolve));
      call.write(fullDuplexRequest(SIZES.responses[i], SIZES.requests[i]));
      received.push((await next).payload.body.length);
    }
    call.end();
    const r = await done;
    expectCode(r.status, grpc.status.OK);
    assert.deepStrictEqual(received, SIZES.responses);
  },
  async empty_stream(c) {
    const call = c.test.FullDuplexCall({ deadline: deadline(10) });
    const done = collect(call);
    call.end();
    const r = await done;
    expectCode(r.status, grpc.status.OK);
    assert.strictEqual(r.messages.length, 0);
  },
  async cancel_after_begin(c) {
    const result = await new Promise((resolve) => {
      const call = c.test.StreamingInputCall({ deadline: deadline(10) }, (error) => resolve(error));
      call.cancel();
    });
    expectCode(result, grpc.status.CANCELLED);
  },
  async cancel_after_first_response(c) {
    const call = c.test.FullDuplexCall({ deadline: deadline(10) });
    const done = collect(call);
    const first = new Promise((resolve) => call.once('data', resolve));
    call.write(fullDuplexRequest(31415, 27182));
    assert.strictEqual((await first).payload.body.length, 31415);
    call.cancel();
    const r = await done;
    expectCode(r.status, grpc.status.CANCELLED);
  },
  async timeout_on_sleeping_server(c) {
    const call = c.test.FullDuplexCall({ deadline: new Date(Date.now() + 1) });
    const done = collect(call);
    call.write({ payload: payload(27182) });
    const r = await done;
    expectCode(r.status, grpc.status.DEADLINE_EXCEEDED);
  },
  async custom_metadata(c) {
    const r = await unary(c.test, 'UnaryCall', { response_size: 314159, payload: payload(271828) }, echoMetadata());
    expectCode(r.status, grpc.status.OK);
    checkEcho(r.initial, r.status.metadata);
    const call = c.test.FullDuplexCall(echoMetadata(), { deadline: deadline(10) });
    const done = collect(call);
    call.write(fullDuplexRequest(314159, 271828));
    call.end();
    const s = await done;
    expectCode(s.status, grpc.status.OK);
    assert.strictEqual(s.messages[0].payload.body.length, 314159);
    checkEcho(s.initial, s.status.metadata);
  },
  async status_code_and_message(c) {
    const status = { code: 2, message: 'test status message' };
    const r = await unary(c.test, 'UnaryCall', { response_status: status });
    expectCode(r.status, grpc.status.UNKNOWN, 'test status message');
    const call = c.test.FullDuplexCall({ deadline: deadline(10) });
    const done = collect(call);
    call.write({ response_status: status });
    call.end();
    expectCode((await done).status, grpc.status.UNKNOWN, 'test status message');
  },
  async special_status_message(c) {
    const r = await unary(c.test, 'UnaryCall', { response_status: { code: 2, message: SPECIAL } });
    expectCode(r.status, grpc.status.UNKNOWN, SPECIAL);
  },
  async unimplemented_method(c) {
    const r = await unary(c.test, 'UnimplementedCall', {});
    expectCode(r.status, grpc.status.UNIMPLEMENTED);
  },
  async unimplemented_service(c) {
    const r = await unary(c.unimplemented, 'UnimplementedCall', {});
    expectCode(r.status, grpc.status.UNIMPLEMENTED);
  },
};

async function main() {
  const [target, ...names] = process.argv.slice(2);
  const credentials = grpc.credentials.createInsecure();
  const clients = {
    test: new testing.TestService(target, credentials),
    unimplemented: new testing.UnimplementedService(target, credentials),
  };
  for (const name of names.length ? names : Object.keys(CASES)) {
    const run = CASES[name];
    let line;
    if (!run) {
      line = { case: name, ok: false, error: 'no such case' };
    } else {
      try {
        await run(clients);
        line = { case: name, ok: true };
      } catch (error) {
        line = { case: name, ok: false, error: String(error && error.message ? error.message : error) };
      }
    }
    console.log(JSON.stringify(line));
  }
  clients.test.close();
  clients.unimplemented.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
