export * from './servers';
export * from './free-port';
export * from './test-artifacts';
export * from './managed-process';
export * from './reverse-proxy';
export * from './tcp-fault-proxy';
export * from './nats-server';
export * from './stack-topology';
