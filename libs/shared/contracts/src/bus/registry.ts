/** Every command and event STACK puts on the bus: the source of the AsyncAPI document. */
import { SERVICE_NAMES } from '../services';
import type { CommandDef, EventDef } from './definitions';
import { ALL_EVENTS } from './events';
import { SYSTEM_COMMANDS } from './system';

export const ALL_COMMANDS: readonly CommandDef[] = SERVICE_NAMES.flatMap((s) => [SYSTEM_COMMANDS[s].ping, SYSTEM_COMMANDS[s].pingPeers]);

export const ALL_EVENT_DEFS: readonly EventDef[] = ALL_EVENTS;
