// Preloaded (NODE_OPTIONS=--require) by tests that need a build without the
// native fast path: loading the addon fails as it does when it was not built.
'use strict';
const Module = require('node:module');
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'egress-router-fastpath') throw new Error("Cannot find module 'egress-router-fastpath'");
  return load.call(this, request, ...rest);
};
