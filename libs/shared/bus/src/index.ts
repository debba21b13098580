export * from './bus';
export * from './connection';
export { connectNatsBus, serviceInboxPrefix, type NatsBusOptions } from './nats-bus';
export { createInProcessBus, type InProcessBusOptions } from './in-process-bus';
export type { BusMetricsSink } from './dispatch';
export { streamPlans, type StreamPlan } from './streams';
export { assertValid, validatorFor, describeErrors } from './validation';
