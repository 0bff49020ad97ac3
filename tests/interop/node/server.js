// grpc.testing.TestService on grpc-js, as doc/interop-test-descriptions.md describes the
// server. Usage: node server.js [port] (0 or none: an ephemeral port). Prints
// "LISTENING <port>" once bound; stops on SIGTERM/SIGINT.
'use strict';

const { grpc, loadTesting, ECHO_INITIAL, ECHO_TRAILING } = require('./common');

const testing = loadTesting();

function payload(size) {
  return { type: 'COMPRESSABLE', body: Buffer.alloc(size) };
}

// The echo metadata of the custom_metadata case: initial now, trailing with the status.
function echoMetadata(call) {
  const initial = new grpc.Metadata();
  for (const value of call.metadata.get(ECHO_INITIAL)) initial.add(ECHO_INITIAL, value);
  call.sendMetadata(initial);
  const trailing = new grpc.Metadata();
  for (const value of call.metadata.get(ECHO_TRAILING)) trailing.add(ECHO_TRAILING, value);
  return trailing;
}

function requestedStatus(request, trailing) {
  const status = request.response_status;
  if (!status || status.code === 0) return null;
  return { code: status.code, details: status.message, metadata: trailing };
}

const service = {
  EmptyCall(call, callback) {
    callback(null, {});
  },
  UnaryCall(call, callback) {
    const trailing = echoMetadata(call);
    const error = requestedStatus(call.request, trailing);
    if (error) return callback(error);
    callback(null, { payload: payload(call.request.response_size) }, trailing);
  },
  CacheableUnaryCall(call, callback) {
    callback(null, { payload: payload(call.request.response_size) });
  },
  StreamingOutputCall(call) {
    const trailing = echoMetadata(call);
    for (const parameters of call.request.response_parameters) {
      call.write({ payload: payload(parameters.size) });
    }
    const error = requestedStatus(call.request, trailing);
    if (error) return call.emit('error', error);
    call.end(trailing);
  },
  StreamingInputCall(call, callback) {
    let total = 0;
    call.on('data', (request) => {
      total += request.payload ? request.payload.body.length : 0;
    });
    call.on('end', () => callback(null, { aggregated_payload_size: total }));
  },
  FullDuplexCall(call) {
    const trailing = echoMetadata(call);
    let failed = false;
    call.on('data', (request) => {
      if (failed) return;
      const error = requestedStatus(request, trailing);
      if (error) {
        failed = true;
        call.emit('error', error);
        return;
      }
      for (const parameters of request.response_parameters) {
        call.write({ payload: payload(parameters.size) });
      }
    });
    call.on('end', () => {
      if (!failed) call.end(trailing);
    });
  },
  HalfDuplexCall(call) {
    const requests = [];
    call.on('data', (request) => requests.push(request));
    call.on('end', () => {
      for (const request of requests) {
        for (const parameters of request.response_parameters) {
          call.write({ payload: payload(parameters.size) });
        }
      }
      call.end();
    });
  },
};

const server = new grpc.Server();
server.addService(testing.TestService.service, service);
const port = process.argv[2] || '0';
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  if (error) {
    console.error(error.message);
    process.exit(1);
  }
  console.log(`LISTENING ${bound}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.tryShutdown(() => process.exit(0)));
}
