import { busContractSuite } from './bus-contract.suite';
import { createInProcessBus } from './in-process-bus';

busContractSuite('in-process bus', async ({ prefix, internalSecret }) => createInProcessBus({ prefix, internalSecret, timeoutMs: 2000, instanceId: 'test' }), { sharedConnection: true });
