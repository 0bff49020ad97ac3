// Loads grpc.testing from the repository's protos/ with proto-loader (no code generation).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');

function loadTesting() {
  const definition = protoLoader.loadSync('grpcstream_interop/test.proto', {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).grpc.testing;
}

const ECHO_INITIAL = 'x-grpc-test-echo-initial';
const ECHO_TRAILING = 'x-grpc-test-echo-trailing-bin';

module.exports = { grpc, loadTesting, ECHO_INITIAL, ECHO_TRAILING };
