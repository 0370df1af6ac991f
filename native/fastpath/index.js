'use strict';
// The addon built by `npm ci` (node-gyp, against /usr/include/node: see ../../.npmrc).
module.exports = require('./build/Release/fastpath.node');
