// Preloaded by cli-parity.test.ts (NODE_OPTIONS=--require=...): a machine where
// the native addon was not built, as the loader of engines/fastpath sees it.
const Module = require('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'egress-router-fastpath') {
    const e = new Error(`Cannot find module '${request}'`);
    e.code = 'MODULE_NOT_FOUND';
    throw e;
  }
  return resolve.call(this, request, ...rest);
};
