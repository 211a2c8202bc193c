// Preloaded into every node process LocalStack starts (NODE_OPTIONS=--require ...):
// kinesis-mock has no bind-host option and listens on 0.0.0.0 (two ports); force 127.0.0.1.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 !== null && typeof a0 === 'object' && !Array.isArray(a0) && !('fd' in a0) && !('path' in a0)) {
    args[0] = { ...a0, host: '127.0.0.1' };
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    if (typeof args[1] === 'string') args[1] = '127.0.0.1';
    else args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
